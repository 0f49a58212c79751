"""Test isolation strategies (per-test server, rollback, truncate, template, warm pool)."""
