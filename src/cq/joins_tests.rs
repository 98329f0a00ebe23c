//! Joins in the database, inside one (rolled back) transaction: what creation records, the
//! index advisor, and views that follow every kind of change of every table.

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    use crate::testing::{count, exec, one, sqlstate_of};
    use pgrx::prelude::*;

    fn setup() {
        exec("SELECT beacon.create_project('shop')");
        exec("CREATE TABLE shop.events (id bigserial PRIMARY KEY, product int, country text, price numeric, qty int)");
        exec("CREATE TABLE shop.products (id int PRIMARY KEY, category text, brand text)");
        exec("CREATE TABLE shop.countries (code text PRIMARY KEY, region text)");
        exec("INSERT INTO shop.products SELECT i, 'cat' || (i % 5), 'b' || (i % 3) FROM generate_series(0, 49) i");
        exec("INSERT INTO shop.countries SELECT 'c' || i, 'r' || (i % 3) FROM generate_series(0, 9) i");
        exec(
            "INSERT INTO shop.events (product, country, price, qty)
             SELECT CASE WHEN i % 23 = 0 THEN NULL ELSE i % 60 END, 'c' || (i % 12), i % 7, i % 4
               FROM generate_series(1, 400) i",
        );
    }

    fn differences(view: &str, query: &str) -> i64 {
        count(&format!(
            "(SELECT * FROM {view} EXCEPT ALL ({query})) UNION ALL (({query}) EXCEPT ALL SELECT * FROM {view})"
        ))
    }

    const QUERIES: [&str; 4] = [
        "SELECT p.category, count(*) AS n, sum(e.price) AS revenue, max(e.qty) AS top FROM shop.events e JOIN shop.products p ON p.id = e.product GROUP BY p.category",
        "SELECT c.region, p.brand, count(*) AS n, min(e.price) AS low, count(DISTINCT e.qty) AS qs FROM shop.events e LEFT JOIN shop.products p ON p.id = e.product LEFT JOIN shop.countries c ON c.code = e.country GROUP BY c.region, p.brand",
        "SELECT category, count(*) AS n, avg(qty) AS a FROM shop.events e JOIN shop.products p ON p.id = product AND p.brand <> 'b2' WHERE e.price > 1 GROUP BY category",
        "SELECT a.category, count(*) AS n FROM shop.products a JOIN shop.products b ON b.brand = a.brand GROUP BY a.category",
    ];

    fn check(mode: &str) {
        setup();
        for (i, q) in QUERIES.iter().enumerate() {
            exec(&format!(
                "SELECT beacon.create_continuous_query('shop', 'j{i}', $q${q}$q$, '{mode}')"
            ));
        }
        let all_exact = |when: &str| {
            for (i, q) in QUERIES.iter().enumerate() {
                assert_eq!(differences(&format!("shop.j{i}"), q), 0, "j{i} {when}: {q}");
            }
        };
        all_exact("after the backfill");
        for dml in [
            "INSERT INTO shop.events (product, country, price, qty) SELECT i % 70, 'c' || (i % 13), i % 9, i % 5 FROM generate_series(1, 100) i",
            "UPDATE shop.products SET category = 'moved' WHERE id % 7 = 0",
            "UPDATE shop.products SET brand = 'b1' WHERE id % 11 = 0",
            "DELETE FROM shop.products WHERE id % 13 = 0",
            "INSERT INTO shop.products SELECT i, 'new' || (i % 2), 'b' || (i % 4) FROM generate_series(50, 65) i",
            "UPDATE shop.products SET id = id + 1000 WHERE id BETWEEN 20 AND 22",
            "UPDATE shop.events SET product = product + 1 WHERE id % 17 = 0",
            "DELETE FROM shop.events WHERE id % 19 = 0",
            "DELETE FROM shop.events WHERE qty = (SELECT max(qty) FROM shop.events)",
            "INSERT INTO shop.countries VALUES ('c10', 'r9'), ('c11', 'r8')",
            "UPDATE shop.countries SET region = 'rX' WHERE code = 'c1'",
            "DELETE FROM shop.countries WHERE code = 'c2'",
            "TRUNCATE shop.countries",
            "INSERT INTO shop.countries SELECT 'c' || i, 'q' || (i % 2) FROM generate_series(0, 5) i",
            "TRUNCATE shop.products",
            "INSERT INTO shop.products SELECT i, 'cat' || (i % 5), 'b' || (i % 3) FROM generate_series(0, 49) i",
        ] {
            exec(dml);
            all_exact(dml);
        }
        exec("SELECT beacon.compact()");
        all_exact("after compaction");
    }

    #[pg_test]
    fn pg_join_views_follow_every_change_async() {
        check("async");
    }

    #[pg_test]
    fn pg_join_views_follow_every_change_immediate() {
        check("immediate");
    }

    #[pg_test]
    fn pg_a_join_is_stored_qualified_with_its_tables() {
        setup();
        exec(
            "SELECT beacon.create_continuous_query('shop', 'j', $q$SELECT category, count(*) AS n \
             FROM events e JOIN products p ON p.id = product GROUP BY category$q$)",
        );
        let stored: String =
            one("SELECT query FROM beacon.continuous_queries WHERE name = 'j'").unwrap_or_default();
        assert!(
            stored.contains(r#""p".category"#) && stored.contains(r#""shop"."products" AS "p""#),
            "{stored}"
        );
        let joined: String =
            one("SELECT joined::text FROM beacon.continuous_queries WHERE name = 'j'")
                .unwrap_or_default();
        assert_eq!(joined, "{products}");
        // both tables have the capture triggers
        assert_eq!(
            count("SELECT 1 FROM pg_trigger WHERE tgname = '_beacon_cq_insert' AND tgrelid IN ('shop.events'::regclass, 'shop.products'::regclass)"),
            2
        );
        // a column added to the other table later does not make the stored query ambiguous
        exec("ALTER TABLE shop.events ADD COLUMN category text");
        exec("INSERT INTO shop.events (product, price) VALUES (1, 1)");
        assert_eq!(
            differences("shop.j", "SELECT p.category, count(*) AS n FROM shop.events e JOIN shop.products p ON p.id = e.product GROUP BY p.category"),
            0
        );
        exec("SELECT beacon.drop_continuous_query('shop', 'j')");
        assert_eq!(
            count("SELECT 1 FROM pg_trigger WHERE tgname LIKE '_beacon_cq_%' AND tgrelid IN ('shop.events'::regclass, 'shop.products'::regclass)"),
            0
        );
    }

    #[pg_test]
    fn pg_the_index_advisor_creates_what_it_names() {
        setup();
        exec(
            "SELECT beacon.create_continuous_query('shop', 'j', $q$SELECT p.brand, count(*) AS n \
             FROM events e JOIN products p ON p.id = e.product GROUP BY p.brand$q$, 'async', create_indexes => true)",
        );
        assert_eq!(
            count("SELECT 1 FROM pg_indexes WHERE schemaname = 'shop' AND tablename = 'events' AND indexdef LIKE '%(product)%'"),
            1
        );
    }

    #[pg_test]
    fn pg_joins_it_cannot_maintain_are_refused() {
        setup();
        for (query, code) in [
            ("SELECT p.brand, count(*) FROM events e RIGHT JOIN products p ON p.id = e.product GROUP BY p.brand", "0A000"),
            ("SELECT p.brand, count(*) FROM events e JOIN products p ON p.id > e.product GROUP BY p.brand", "0A000"),
            ("SELECT p.brand, count(*) FROM events e JOIN products p ON p.id = e.product + 1 GROUP BY p.brand", "0A000"),
            ("SELECT id, count(*) FROM events e JOIN products p ON p.id = e.product GROUP BY id", "42702"),
            ("SELECT p.brand, count(*) FROM events e JOIN pg_catalog.pg_class p ON p.oid = e.product GROUP BY p.brand", "0A000"),
        ] {
            assert_eq!(
                sqlstate_of(&format!(
                    "SELECT beacon.create_continuous_query('shop', 'bad', $q${query}$q$)"
                )),
                Some(code.to_string()),
                "{query}"
            );
        }
    }
}
