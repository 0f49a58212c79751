-- Schema of the shop service the short suite tests: customers, products, orders
-- and their lines, with a view that joins them (shaped like suite "B").
CREATE TABLE customers (
    id bigserial PRIMARY KEY,
    email text NOT NULL UNIQUE,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE products (
    id bigserial PRIMARY KEY,
    sku text NOT NULL UNIQUE,
    title text NOT NULL,
    price_cents int NOT NULL CHECK (price_cents >= 0),
    stock int NOT NULL DEFAULT 0 CHECK (stock >= 0)
);

CREATE TABLE orders (
    id bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES customers (id) ON DELETE CASCADE,
    status text NOT NULL DEFAULT 'new' CHECK (status IN ('new', 'paid', 'shipped', 'cancelled')),
    placed_at timestamptz NOT NULL
);
CREATE INDEX orders_customer ON orders (customer_id, placed_at);

CREATE TABLE order_lines (
    order_id bigint NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    product_id bigint NOT NULL REFERENCES products (id),
    quantity int NOT NULL CHECK (quantity > 0),
    price_cents int NOT NULL,
    PRIMARY KEY (order_id, product_id)
);

CREATE VIEW order_totals AS
SELECT o.id AS order_id, o.customer_id, o.status, sum(l.quantity * l.price_cents) AS total_cents
FROM orders o
JOIN order_lines l ON l.order_id = o.id
GROUP BY o.id;
