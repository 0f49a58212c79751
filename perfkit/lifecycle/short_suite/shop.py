"""Application code under test: a small shop service over any DB-API driver.

The same functions run on psycopg 3 and psycopg2 connections (both use ``%s``
placeholders). Reads go through :func:`engine`, a module-level cache of
connections, as many services keep one: those connections outlive the test
that opened them, the realistic shape a per-test database has to cope with.
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

DRIVERS = ("psycopg", "psycopg2")
#: How many cached read connections the app keeps open (least recently used are closed).
ENGINE_CACHE = 4

_ENGINES: OrderedDict[str, Any] = OrderedDict()


def connect(driver: str, dsn: str) -> Any:
    """A new connection to ``dsn`` through ``driver`` (``psycopg`` or ``psycopg2``).

    Both support ``with connect(...) as conn:``; psycopg 3 closes the connection
    at the end of the block, psycopg2 only commits and leaves it open.
    """
    if driver == "psycopg":
        import psycopg

        return psycopg.connect(dsn)
    if driver == "psycopg2":
        import psycopg2

        return psycopg2.connect(dsn)
    raise ValueError(f"unknown driver {driver!r}; choose one of {DRIVERS}")


def engine(dsn: str) -> Any:
    """The app's cached autocommit read connection (psycopg2) for ``dsn``; never closed here."""
    conn = _ENGINES.get(dsn)
    if conn is None or conn.closed:
        import psycopg2

        conn = psycopg2.connect(dsn)
        conn.autocommit = True
        _ENGINES[dsn] = conn
        while len(_ENGINES) > ENGINE_CACHE:
            _, old = _ENGINES.popitem(last=False)
            with contextlib.suppress(Exception):
                old.close()
    _ENGINES.move_to_end(dsn)
    return conn


def sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE of a driver error (``sqlstate`` in psycopg 3, ``pgcode`` in psycopg2)."""
    return getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)


def one(conn: Any, query: str, params: Sequence[Any] = ()) -> Any:
    """First column of the first row (None when there is no row)."""
    cur = conn.cursor()
    try:
        cur.execute(query, tuple(params))
        row = cur.fetchone()
    finally:
        cur.close()
    return None if row is None else row[0]


def rows(conn: Any, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    try:
        cur.execute(query, tuple(params))
        return [tuple(r) for r in cur.fetchall()]
    finally:
        cur.close()


def add_customer(conn: Any, email: str, name: str) -> int:
    return int(
        one(conn, "INSERT INTO customers (email, name) VALUES (%s, %s) RETURNING id", [email, name])
    )


def add_products(conn: Any, items: Iterable[tuple[str, str, int, int]]) -> list[int]:
    """Insert ``(sku, title, price_cents, stock)`` rows; return their ids in order."""
    return [
        int(
            one(
                conn,
                "INSERT INTO products (sku, title, price_cents, stock) "
                "VALUES (%s, %s, %s, %s) RETURNING id",
                item,
            )
        )
        for item in items
    ]


def place_order(
    conn: Any, customer_id: int, lines: Iterable[tuple[int, int]], placed_at: datetime
) -> int:
    """An order with ``(product_id, quantity)`` lines at the products' current prices."""
    order_id = int(
        one(
            conn,
            "INSERT INTO orders (customer_id, placed_at) VALUES (%s, %s) RETURNING id",
            [customer_id, placed_at],
        )
    )
    cur = conn.cursor()
    try:
        cur.executemany(
            "INSERT INTO order_lines (order_id, product_id, quantity, price_cents) "
            "SELECT %s, id, %s, price_cents FROM products WHERE id = %s",
            [(order_id, quantity, product_id) for product_id, quantity in lines],
        )
    finally:
        cur.close()
    return order_id


def reserve(conn: Any, product_id: int, quantity: int) -> bool:
    """Take ``quantity`` from stock if there is enough; False (and nothing changed) if not."""
    left = one(
        conn,
        "UPDATE products SET stock = stock - %s WHERE id = %s AND stock >= %s RETURNING stock",
        [quantity, product_id, quantity],
    )
    return left is not None


def order_total(dsn: str, order_id: int) -> int | None:
    """The order's total from the ``order_totals`` view, read through the app's engine."""
    total = one(engine(dsn), "SELECT total_cents FROM order_totals WHERE order_id = %s", [order_id])
    return None if total is None else int(total)


def history(dsn: str, customer_id: int, limit: int = 10) -> list[tuple[int, int]]:
    """``(order_id, total_cents)`` of a customer's newest orders, newest first."""
    return rows(
        engine(dsn),
        "SELECT o.id, t.total_cents FROM orders o "
        "JOIN order_totals t ON t.order_id = o.id "
        "JOIN customers c ON c.id = o.customer_id "
        "WHERE c.id = %s ORDER BY o.placed_at DESC, o.id DESC LIMIT %s",
        [customer_id, limit],
    )
