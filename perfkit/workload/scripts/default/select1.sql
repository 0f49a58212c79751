-- 60 % of the pool lab's default mix: a trivial statement
SELECT 1;
