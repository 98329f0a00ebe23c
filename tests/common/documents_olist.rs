//! The seed scenario's data (TapFlow's order-wide view over Olist-shaped e-commerce
//! tables): orders, customers, order_payments, order_items, products, sellers, with text
//! ids, timestamps (with and without time zone), numerics and floats; a data set of a
//! chosen scale with missing matches (orders of unknown customers, orders without items,
//! items of unknown products or without a seller); the order-wide spec; and random
//! writes on every table for the concurrency and crash tests.
#![allow(dead_code)]

use crate::common::Rng;
use serde_json::{json, Value};

/// The size of a data set: `Scale::ci()` for the test suite; raise `ORDERS` for a load run.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    pub orders: u64,
    pub customers: u64,
    pub products: u64,
    pub sellers: u64,
}

/// Orders of the CI data set (items ≈ 1.1 per order, customers ≈ orders).
pub const ORDERS: u64 = 3_000;

impl Scale {
    pub fn ci() -> Scale {
        Scale::of(ORDERS)
    }

    pub fn of(orders: u64) -> Scale {
        Scale {
            orders,
            customers: orders * 97 / 100,
            products: (orders * 3 / 10).max(10),
            sellers: (orders * 3 / 100).max(4),
        }
    }
}

pub const SCHEMA: &str = "
CREATE TABLE customers (
    customer_id text PRIMARY KEY,
    customer_unique_id text NOT NULL,
    customer_zip_code_prefix text,
    customer_city text,
    customer_state text
);
CREATE TABLE orders (
    order_id text PRIMARY KEY,
    customer_id text,
    order_status text NOT NULL,
    order_purchase_timestamp timestamptz,
    order_approved_at timestamptz,
    order_delivered_carrier_date timestamptz,
    order_delivered_customer_date timestamptz,
    order_estimated_delivery_date timestamptz
);
CREATE TABLE order_payments (
    order_id text NOT NULL,
    payment_sequential int NOT NULL,
    payment_type text,
    payment_installments int,
    payment_value numeric(10,2),
    PRIMARY KEY (order_id, payment_sequential)
);
CREATE TABLE order_items (
    order_id text NOT NULL,
    order_item_id int NOT NULL,
    product_id text,
    seller_id text,
    shipping_limit_date timestamp,
    price numeric(10,2),
    freight_value double precision,
    PRIMARY KEY (order_id, order_item_id)
);
CREATE TABLE products (
    product_id text PRIMARY KEY,
    product_category_name text,
    product_name_lenght int,
    product_description_lenght int,
    product_photos_qty int,
    product_weight_g int,
    product_length_cm int,
    product_height_cm int,
    product_width_cm int
);
CREATE TABLE sellers (
    seller_id text PRIMARY KEY,
    seller_zip_code_prefix text,
    seller_city text,
    seller_state text
);
";

pub const STATUSES: [&str; 6] = [
    "delivered",
    "shipped",
    "processing",
    "invoiced",
    "canceled",
    "created",
];
const CITIES: &str = "ARRAY['sao paulo', 'santos', 'rio de janeiro', 'curitiba', 'campinas', \
                      'belo horizonte', 'porto alegre', 'salvador']";
const STATES: &str = "ARRAY['SP', 'RJ', 'PR', 'MG', 'RS', 'BA']";
const CATEGORIES: &str = "ARRAY['beleza_saude', 'informatica_acessorios', 'moveis_decoracao', \
                          'esporte_lazer', 'utilidades_domesticas', 'relogios_presentes', 'telefonia']";

/// The data set, as INSERT … SELECT statements (deterministic: every value is a function
/// of the row number). Some orders' customers do not exist (a customer id past the last,
/// or NULL), some orders have no items or no payments, some items' products do not
/// exist, some items have no seller.
pub fn populate(scale: Scale) -> Vec<String> {
    let Scale {
        orders,
        customers,
        products,
        sellers,
    } = scale;
    // h(x): a stable pseudo-random non-negative integer of a text
    let h = |x: &str| format!("(pg_catalog.hashtext({x}) & 2147483647)");
    vec![
        format!(
            "INSERT INTO customers SELECT pg_catalog.md5('c' || g), pg_catalog.md5('u' || (g % {u})),
                    pg_catalog.lpad(({hz} % 99999)::text, 5, '0'),
                    ({CITIES})[1 + {hc} % 8], ({STATES})[1 + {hs} % 6]
               FROM pg_catalog.generate_series(1, {customers}) g",
            u = customers * 9 / 10 + 1,
            hz = h("'z' || g"),
            hc = h("'city' || g"),
            hs = h("'state' || g"),
        ),
        format!(
            "INSERT INTO orders SELECT pg_catalog.md5('o' || g),
                    CASE WHEN g % 97 = 0 THEN NULL ELSE pg_catalog.md5('c' || (1 + {hc} % {cust_range})) END,
                    (ARRAY['delivered', 'delivered', 'delivered', 'shipped', 'processing', 'invoiced', 'canceled', 'created'])[1 + {hs} % 8],
                    p, CASE WHEN g % 11 = 0 THEN NULL ELSE p + interval '37 minutes' END,
                    CASE WHEN g % 5 = 0 THEN NULL ELSE p + interval '3 days 4 hours' END,
                    CASE WHEN g % 4 = 0 THEN NULL ELSE p + interval '9 days 17:45:03' END,
                    pg_catalog.date_trunc('day', p + interval '20 days')
               FROM (SELECT g, timestamptz '2017-01-01 00:00:00+00' + {ht} * interval '1 second' AS p
                       FROM pg_catalog.generate_series(1, {orders}) g) s",
            cust_range = customers * 103 / 100 + 1,
            hc = h("'oc' || g"),
            hs = h("'os' || g"),
            ht = h("'ot' || g") + " % 50000000",
        ),
        format!(
            "INSERT INTO order_payments SELECT o.order_id, s,
                    (ARRAY['credit_card', 'boleto', 'voucher', 'debit_card'])[1 + {hp} % 4],
                    1 + {hi} % 10, ({hv} % 100000) / 100.0
               FROM orders o CROSS JOIN pg_catalog.generate_series(1, 3) s
              WHERE s <= CASE WHEN {hn} % 10 < 8 THEN 1 WHEN {hn} % 10 = 8 THEN 3 ELSE 0 END",
            hp = h("o.order_id || s || 'pt'"),
            hi = h("o.order_id || s || 'pi'"),
            hv = h("o.order_id || s || 'pv'"),
            hn = h("o.order_id || 'pn'"),
        ),
        format!(
            "INSERT INTO order_items SELECT o.order_id, s,
                    pg_catalog.md5('p' || (1 + {hp} % {product_range})),
                    CASE WHEN {hs} % 50 = 0 THEN NULL ELSE pg_catalog.md5('s' || (1 + {hs} % {sellers})) END,
                    timestamp '2017-01-01 00:00:00' + ({ht} % 40000000) * interval '1 second',
                    ({hv} % 100000) / 100.0, ({hf} % 5000) / 7.0
               FROM orders o CROSS JOIN pg_catalog.generate_series(1, 3) s
              WHERE s <= CASE WHEN {hn} % 20 < 15 THEN 1 WHEN {hn} % 20 < 18 THEN 2
                              WHEN {hn} % 20 = 18 THEN 3 ELSE 0 END",
            product_range = products + products / 30 + 1,
            hp = h("o.order_id || s || 'ip'"),
            hs = h("o.order_id || s || 'is'"),
            ht = h("o.order_id || s || 'it'"),
            hv = h("o.order_id || s || 'iv'"),
            hf = h("o.order_id || s || 'if'"),
            hn = h("o.order_id || 'in'"),
        ),
        format!(
            "INSERT INTO products SELECT pg_catalog.md5('p' || g), 
                    CASE WHEN g % 41 = 0 THEN NULL ELSE ({CATEGORIES})[1 + {hc} % 7] END,
                    10 + {h1} % 50, CASE WHEN g % 13 = 0 THEN NULL ELSE 50 + {h2} % 3000 END,
                    1 + {h3} % 6, 100 + {h4} % 20000, 10 + {h5} % 90, 2 + {h6} % 60, 6 + {h7} % 80
               FROM pg_catalog.generate_series(1, {products}) g",
            hc = h("'pc' || g"),
            h1 = h("'p1' || g"),
            h2 = h("'p2' || g"),
            h3 = h("'p3' || g"),
            h4 = h("'p4' || g"),
            h5 = h("'p5' || g"),
            h6 = h("'p6' || g"),
            h7 = h("'p7' || g"),
        ),
        format!(
            "INSERT INTO sellers SELECT pg_catalog.md5('s' || g),
                    pg_catalog.lpad(({hz} % 99999)::text, 5, '0'),
                    ({CITIES})[1 + {hc} % 8], ({STATES})[1 + {hs} % 6]
               FROM pg_catalog.generate_series(1, {sellers}) g",
            hz = h("'sz' || g"),
            hc = h("'sc' || g"),
            hs = h("'ss' || g"),
        ),
        "ANALYZE".to_string(),
    ]
}

/// The order-wide document of the seed: customer_info object, order_payments and
/// order_items arrays, each item with its product and seller; indexes on the documents,
/// and on the lookup columns of the tables.
pub fn order_wide_spec() -> Value {
    json!({
        "from": "orders",
        "key": ["order_id"],
        "lookups": [
            {"path": "customer_info", "from": "customers", "type": "object",
             "on": {"customer_id": "customer_id"}},
            {"path": "order_payments", "from": "order_payments", "type": "array",
             "on": {"order_id": "order_id"}, "order_by": ["payment_sequential"]},
            {"path": "order_items", "from": "order_items", "type": "array",
             "on": {"order_id": "order_id"}, "order_by": ["order_item_id"]},
            {"path": "order_items.product", "from": "products", "type": "object",
             "on": {"product_id": "product_id"}},
            {"path": "order_items.seller", "from": "sellers", "type": "object",
             "on": {"seller_id": "seller_id"}}
        ],
        "indexes": ["doc->'customer_info'->>'customer_id'", "gin"],
        "create_indexes": true
    })
}

/// A variant: only open orders (`where`), fewer root columns, renamed fields, payments
/// newest first, items without their order id, the seller's city only.
pub fn open_orders_spec() -> Value {
    json!({
        "from": "orders",
        "key": ["order_id"],
        "where": "order_status <> 'canceled' AND order_status <> 'created'",
        "exclude": ["order_delivered_carrier_date", "order_approved_at"],
        "rename": {"order_status": "status", "order_purchase_timestamp": "purchased"},
        "lookups": [
            {"path": "customer", "from": "customers", "type": "object",
             "on": {"customer_id": "customer_id"}, "columns": ["customer_city", "customer_state"]},
            {"path": "order_payments", "from": "order_payments", "type": "array",
             "on": {"order_id": "order_id"}, "order_by": ["payment_value DESC", "payment_sequential"]},
            {"path": "items", "from": "order_items", "type": "array",
             "on": {"order_id": "order_id"}, "order_by": ["price DESC"], "exclude": ["order_id"],
             "rename": {"order_item_id": "n"}},
            {"path": "items.seller_id", "from": "sellers", "type": "object",
             "on": {"seller_id": "seller_id"}, "columns": ["seller_city"]},
            {"path": "items.product", "from": "products", "type": "object",
             "on": {"product_id": "product_id"}, "columns": ["product_category_name"]}
        ]
    })
}

fn pick<'a, T>(rng: &mut Rng, items: &'a [T]) -> &'a T {
    &items[rng.below(items.len() as u64) as usize]
}

/// Random writes on every table of the seed schema, for concurrent writers: inserts,
/// updates (of shown columns, of on-columns, moving an item to another order, a product
/// to another category) and deletes. Writer `no` inserts keys of its own, so that
/// concurrent writers do not collide on primary keys; the rows they update and delete are
/// anyone's.
pub struct Writes {
    pub scale: Scale,
    pub no: u64,
    pub counter: u64,
}

impl Writes {
    pub fn new(scale: Scale, no: u64) -> Writes {
        Writes {
            scale,
            no,
            counter: 0,
        }
    }

    fn order(&self, rng: &mut Rng) -> String {
        format!(
            "pg_catalog.md5('o' || {})",
            1 + rng.below(self.scale.orders)
        )
    }

    fn customer(&self, rng: &mut Rng) -> String {
        format!(
            "pg_catalog.md5('c' || {})",
            1 + rng.below(self.scale.customers + 3)
        )
    }

    fn product(&self, rng: &mut Rng) -> String {
        let n = if rng.below(3) == 0 {
            1 + rng.below(4)
        } else {
            1 + rng.below(self.scale.products + 2)
        };
        format!("pg_catalog.md5('p' || {n})")
    }

    fn seller(&self, rng: &mut Rng) -> String {
        format!(
            "pg_catalog.md5('s' || {})",
            1 + rng.below(self.scale.sellers + 1)
        )
    }

    fn fresh(&mut self, what: &str) -> String {
        self.counter += 1;
        format!("'{what}_w{}_{}'", self.no, self.counter)
    }

    /// One random statement.
    pub fn statement(&mut self, rng: &mut Rng) -> String {
        let n = self.no * 1_000_000 + self.counter;
        match rng.below(20) {
            0 => {
                let id = self.fresh("ORD");
                format!(
                    "INSERT INTO orders VALUES ({id}, {}, '{}', now(), NULL, NULL, NULL, now() + interval '10 days')",
                    self.customer(rng),
                    pick(rng, &STATUSES)
                )
            }
            1 => format!(
                "UPDATE orders SET order_status = '{}' WHERE order_id = {}",
                pick(rng, &STATUSES),
                self.order(rng)
            ),
            2 => format!(
                "UPDATE orders SET customer_id = {} WHERE order_id = {}",
                self.customer(rng),
                self.order(rng)
            ),
            3 => format!("DELETE FROM orders WHERE order_id = {}", self.order(rng)),
            4 => {
                self.counter += 1;
                format!(
                    "INSERT INTO order_items VALUES ({}, {}, {}, {}, '2018-03-26 18:31:29', {}.{}, {}.5)",
                    self.order(rng),
                    1000 + n + 1,
                    self.product(rng),
                    self.seller(rng),
                    rng.below(500),
                    rng.below(100),
                    rng.below(50)
                )
            }
            5 => format!(
                "UPDATE order_items SET price = price + 1 WHERE order_id = {}",
                self.order(rng)
            ),
            6 => {
                // an item moves to another order (a new item number there: no collision)
                self.counter += 1;
                format!(
                    "UPDATE order_items SET order_id = {}, order_item_id = {} \
                     WHERE (order_id, order_item_id) = (SELECT order_id, order_item_id FROM order_items \
                             WHERE order_id >= {} ORDER BY order_id, order_item_id LIMIT 1)",
                    self.order(rng),
                    1000 + n + 1,
                    self.order(rng)
                )
            }
            7 => format!(
                "UPDATE order_items SET product_id = {}, seller_id = {} WHERE order_id = {}",
                self.product(rng),
                self.seller(rng),
                self.order(rng)
            ),
            8 => format!(
                "DELETE FROM order_items WHERE order_id = {} AND order_item_id = 1",
                self.order(rng)
            ),
            9 => format!(
                "UPDATE products SET product_category_name = '{}' WHERE product_id = {}",
                pick(rng, &["telefonia", "cool_stuff", "bebes", "pet_shop"]),
                self.product(rng)
            ),
            10 => format!(
                "UPDATE products SET product_weight_g = product_weight_g + 1 WHERE product_id IN ({}, {})",
                self.product(rng),
                self.product(rng)
            ),
            11 => {
                let id = self.fresh("PRD");
                format!(
                    "INSERT INTO products (product_id, product_category_name, product_photos_qty) VALUES ({id}, 'new', 1); \
                     UPDATE order_items SET product_id = {id} WHERE order_id = {}",
                    self.order(rng)
                )
            }
            12 => format!(
                "DELETE FROM products WHERE product_id = {}",
                self.product(rng)
            ),
            13 => format!(
                "UPDATE customers SET customer_city = 'CITY_' || customer_city WHERE customer_id = {}",
                self.customer(rng)
            ),
            14 => {
                let id = self.fresh("CUS");
                format!(
                    "INSERT INTO customers VALUES ({id}, 'u', '01000', 'nova', 'SP'); \
                     UPDATE orders SET customer_id = {id} WHERE order_id = {}",
                    self.order(rng)
                )
            }
            15 => format!(
                "UPDATE sellers SET seller_city = seller_city || '!' WHERE seller_id = {}",
                self.seller(rng)
            ),
            16 => format!(
                "UPDATE sellers SET seller_id = {} WHERE seller_id = {}",
                self.fresh("SEL"),
                self.seller(rng)
            ),
            17 => {
                self.counter += 1;
                format!(
                    "INSERT INTO order_payments VALUES ({}, {}, 'voucher', 1, {}.00)",
                    self.order(rng),
                    100 + n + 1,
                    rng.below(300)
                )
            }
            18 => format!(
                "UPDATE order_payments SET payment_value = payment_value + 0.01 WHERE order_id = {}",
                self.order(rng)
            ),
            _ => format!(
                "DELETE FROM order_payments WHERE order_id = {} AND payment_sequential = 1",
                self.order(rng)
            ),
        }
    }
}
