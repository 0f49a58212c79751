"""Tests that keep their data in TEMP tables of their own connection (suite B's usual shape)."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from shop import connect, sqlstate


def test_rows_round_trip_through_a_temp_table(dsn: str, driver: str, rng: random.Random) -> None:
    items = [(f"item-{i}", rng.randint(1, 100)) for i in range(rng.randint(120, 300))]
    with connect(driver, dsn) as conn:
        cur = conn.cursor()
        cur.execute(
            "CREATE TEMP TABLE items (id serial PRIMARY KEY, name text NOT NULL, qty int NOT NULL)"
        )
        cur.executemany("INSERT INTO items (name, qty) VALUES (%s, %s)", items)
        cur.execute("SELECT count(*), sum(qty) FROM items")
        assert tuple(cur.fetchone()) == (len(items), sum(q for _, q in items))
        cur.execute("SELECT name FROM items WHERE qty >= %s ORDER BY id", (50,))
        assert [r[0] for r in cur.fetchall()] == [name for name, q in items if q >= 50]
        cur.execute("SELECT qty / 10, count(*) FROM items GROUP BY 1 ORDER BY 1")
        assert dict(cur.fetchall()) == dict(sorted(Counter(q // 10 for _, q in items).items()))


def test_update_touches_only_matching_rows(dsn: str, driver: str, rng: random.Random) -> None:
    values = [rng.randint(0, 100) for _ in range(rng.randint(120, 300))]
    threshold = rng.randint(10, 90)
    with connect(driver, dsn) as conn:
        cur = conn.cursor()
        cur.execute(
            "CREATE TEMP TABLE counters "
            "(id int PRIMARY KEY, value int NOT NULL, touched bool NOT NULL DEFAULT false)"
        )
        cur.executemany("INSERT INTO counters (id, value) VALUES (%s, %s)", list(enumerate(values)))
        cur.execute(
            "UPDATE counters SET value = value + 1, touched = true WHERE value < %s", (threshold,)
        )
        assert cur.rowcount == sum(v < threshold for v in values)
        cur.execute("SELECT id, value FROM counters WHERE NOT touched ORDER BY id")
        assert [tuple(r) for r in cur.fetchall()] == [
            (i, v) for i, v in enumerate(values) if v >= threshold
        ]
        cur.execute("DELETE FROM counters WHERE touched AND value > %s", (threshold // 2,))
        cur.execute("SELECT count(*) FROM counters")
        assert cur.fetchone()[0] == sum(
            not (v < threshold and v + 1 > threshold // 2) for v in values
        )


def test_unique_violation_leaves_the_connection_usable(
    dsn: str, driver: str, rng: random.Random
) -> None:
    logins = [f"user-{i}-{rng.randrange(10**6)}" for i in range(rng.randint(60, 150))]
    with connect(driver, dsn) as conn:
        cur = conn.cursor()
        cur.execute("CREATE TEMP TABLE users (id serial PRIMARY KEY, login text NOT NULL UNIQUE)")
        cur.executemany("INSERT INTO users (login) VALUES (%s)", [(login,) for login in logins])
        conn.commit()
        with pytest.raises(Exception) as info:
            cur.execute("INSERT INTO users (login) VALUES (%s)", (rng.choice(logins),))
        assert sqlstate(info.value) == "23505"
        conn.rollback()
        cur.execute("SELECT count(*) FROM users")
        assert cur.fetchone()[0] == len(logins)
