-- pgbench builtin select-only (pgbench --show-script=select-only), on pgbench -i tables
\set aid random(1, 100000 * :scale)
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
