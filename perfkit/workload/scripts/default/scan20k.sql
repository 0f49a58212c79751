-- 10 %: a statement that burns server CPU
SELECT count(*) FROM generate_series(1, 20000);
