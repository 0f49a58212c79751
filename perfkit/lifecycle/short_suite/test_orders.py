"""Tests of the shop's orders, in the app's tables (committed, so they need isolation)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from shop import (
    add_customer,
    add_products,
    connect,
    engine,
    history,
    one,
    order_total,
    place_order,
    reserve,
    sqlstate,
)

BASE = datetime(2026, 1, 1, tzinfo=UTC)


def test_order_total_joins_lines_and_products(dsn: str, driver: str, rng: random.Random) -> None:
    prices = [rng.randint(100, 5000) for _ in range(rng.randint(10, 20))]
    orders: dict[int, list[tuple[int, int]]] = {}
    with connect(driver, dsn) as conn:
        customer = add_customer(conn, "buyer@example.com", "Buyer")
        products = add_products(
            conn, [(f"sku-{i}", f"Product {i}", p, 100) for i, p in enumerate(prices)]
        )
        for _ in range(rng.randint(3, 6)):
            picked = rng.sample(products, rng.randint(1, len(products)))
            lines = [(product, rng.randint(1, 5)) for product in picked]
            orders[place_order(conn, customer, lines, BASE)] = lines
        conn.commit()
    price_of = dict(zip(products, prices, strict=True))
    for order, lines in orders.items():
        assert order_total(dsn, order) == sum(q * price_of[p] for p, q in lines)


def test_customer_history_is_newest_first(dsn: str, driver: str, rng: random.Random) -> None:
    placed: dict[int, tuple[datetime, int]] = {}
    with connect(driver, dsn) as conn:
        me = add_customer(conn, "me@example.com", "Me")
        other = add_customer(conn, "other@example.com", "Other")
        [hat] = add_products(conn, [("sku-hat", "Hat", 1500, 1000)])
        for i in range(rng.randint(12, 30)):
            who = other if i % 3 == 0 else me
            at = BASE + timedelta(hours=rng.randint(0, 1000))
            quantity = rng.randint(1, 3)
            order = place_order(conn, who, [(hat, quantity)], at)
            if who == me:
                placed[order] = (at, quantity * 1500)
        conn.commit()
    newest = sorted(placed, key=lambda o: (placed[o][0], o), reverse=True)[:3]
    assert history(dsn, me, limit=3) == [(o, placed[o][1]) for o in newest]


def test_stock_is_never_oversold(dsn: str, driver: str, rng: random.Random) -> None:
    stock = rng.randint(40, 120)
    wants = [rng.randint(1, 6) for _ in range(rng.randint(20, 40))]
    with connect(driver, dsn) as conn:
        [scarf] = add_products(conn, [("sku-scarf", "Scarf", 900, stock)])
        conn.commit()
        granted = 0
        for want in wants:
            if reserve(conn, scarf, want):
                granted += want
            conn.commit()
        left = one(conn, "SELECT stock FROM products WHERE id = %s", [scarf])
        assert left == stock - granted >= 0
        with pytest.raises(Exception) as info:
            one(conn, "UPDATE products SET stock = stock - %s WHERE id = %s", [left + 1, scarf])
        assert sqlstate(info.value) == "23514"
        conn.rollback()


def test_other_connections_see_only_committed_orders(
    dsn: str, driver: str, rng: random.Random
) -> None:
    price = rng.randint(100, 900)
    status = "SELECT status FROM order_totals WHERE order_id = %s"
    with connect(driver, dsn) as conn:
        customer = add_customer(conn, "watcher@example.com", "Watcher")
        [lamp] = add_products(conn, [("sku-lamp", "Lamp", price, 10)])
        conn.commit()
        for quantity in rng.sample(range(1, 10), rng.randint(3, 5)):
            order = place_order(conn, customer, [(lamp, quantity)], BASE)
            assert order_total(dsn, order) is None  # the app's own connection cannot see it yet
            conn.commit()
            assert order_total(dsn, order) == quantity * price
            one(conn, "UPDATE orders SET status = 'cancelled' WHERE id = %s RETURNING id", [order])
            assert one(engine(dsn), status, [order]) == "new"
            conn.commit()
            assert one(engine(dsn), status, [order]) == "cancelled"
