-- 30 %: a statement that waits (like I/O) for 2 ms
SELECT pg_sleep(0.002);
