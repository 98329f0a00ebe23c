use pgrx::prelude::*;

/// Keys, names and sources (issue 11): user expressions next to generated SQL, user names
/// next to generated aliases, long keys, and the sources and DDL that are refused.
#[pg_schema]
mod tests {
    use crate::testing::{count, exec, one};
    use pgrx::prelude::*;

    const MODES: [&str; 2] = ["async", "immediate"];

    fn setup() {
        exec("SELECT beacon.create_project('shop')");
        exec(
            "CREATE TABLE shop.src (id bigserial PRIMARY KEY, country text, product int,
                                    price double precision, qty bigint, flag boolean)",
        );
    }

    fn create(name: &str, query: &str, mode: &str) {
        exec(&format!(
            "SELECT beacon.create_continuous_query('shop', '{name}', $q${query}$q$, '{mode}')"
        ));
    }

    /// `<SQLSTATE> <message>` of the error `sql` fails with, None if it succeeds.
    fn error_of(sql: &str) -> Option<String> {
        exec(
            "CREATE OR REPLACE FUNCTION pg_temp.keys_error_of(stmt pg_catalog.text)
               RETURNS pg_catalog.text LANGUAGE plpgsql AS $$
               BEGIN EXECUTE stmt; RETURN NULL;
               EXCEPTION WHEN others THEN RETURN SQLSTATE || ' ' || SQLERRM; END $$",
        );
        Spi::get_one_with_args::<String>("SELECT pg_temp.keys_error_of($1)", &[sql.into()]).unwrap()
    }

    fn refused(sql: &str, state: &str, what: &str) {
        let error = error_of(sql).unwrap_or_else(|| panic!("accepted: {sql}"));
        assert!(
            error.starts_with(state) && error.contains(what),
            "{sql}: {error} (expected {state} naming {what})"
        );
    }

    fn refused_query(query: &str, state: &str, what: &str) {
        refused(
            &format!(
                "SELECT beacon.create_continuous_query('shop', 'refused', $q${query}$q$, 'async')"
            ),
            state,
            what,
        );
    }

    /// Rows in the view but not in the defining query, plus the reverse.
    fn differences(view: &str, query: &str) -> i64 {
        count(&format!(
            "(SELECT * FROM {view} EXCEPT ALL ({query})) UNION ALL (({query}) EXCEPT ALL SELECT * FROM {view})"
        ))
    }

    fn assert_all_match(queries: &[(String, String)], when: &str) {
        exec("SET LOCAL search_path = shop, public");
        for (view, query) in queries {
            assert_eq!(differences(view, query), 0, "{when}: {query}");
        }
        exec("SET LOCAL search_path = pg_catalog, public");
    }

    fn workload() {
        exec(
            "INSERT INTO shop.src (country, product, price, qty, flag)
             SELECT CASE WHEN i % 7 = 0 THEN NULL ELSE 'c' || (i % 5) END, i % 13,
                    CASE WHEN i % 11 = 0 THEN NULL ELSE (i % 100) * 1.5 END,
                    CASE WHEN i % 4 = 0 THEN NULL ELSE i % 9 END,
                    CASE WHEN i % 6 = 0 THEN NULL ELSE i % 3 = 0 END
               FROM generate_series(1, 300) i",
        );
        exec("UPDATE shop.src SET price = price + 1000, flag = NOT flag WHERE id % 10 = 3");
        exec("DELETE FROM shop.src WHERE id % 6 = 1");
        // the groups' extremes go: min/max are recomputed, in every key shape
        exec("DELETE FROM shop.src WHERE price = (SELECT max(price) FROM shop.src)");
        exec("DELETE FROM shop.src WHERE qty = (SELECT min(qty) FROM shop.src) AND id % 2 = 0");
    }

    #[pg_test]
    fn keys_arguments_and_filters_with_top_level_operators() {
        setup();
        let shapes = [
            "SELECT price IS NULL AS k, count(*) AS n, max(price) AS top, min(qty) AS low FROM src GROUP BY price IS NULL",
            "SELECT flag AND qty > 3 AS k, max(price) AS top, count(DISTINCT product) AS products FROM src GROUP BY 1",
            "SELECT flag OR country = 'c1' AS k, min(price) AS low, sum(qty) AS q FROM src WHERE qty > 2 OR flag GROUP BY 1",
            "SELECT NOT flag AS k, max(qty) AS top, count(DISTINCT qty IS NULL) AS kinds FROM src GROUP BY NOT flag",
            "SELECT country, bool_and(flag OR qty > 4) AS a, bool_or(NOT flag) AS o, count(qty > 3 OR flag) AS c FROM src GROUP BY country",
            "SELECT count(*) AS n, max(price) AS top FROM src WHERE NOT flag OR price IS NULL",
        ];
        let mut queries = Vec::new();
        for mode in MODES {
            for (i, shape) in shapes.iter().enumerate() {
                let name = format!("{}_{i}", &mode[..1]);
                create(&name, shape, mode);
                queries.push((format!("shop.{name}"), shape.to_string()));
            }
        }
        workload();
        assert_all_match(&queries, "before compaction");
        exec("SELECT beacon.compact()");
        assert_all_match(&queries, "after compaction");
        // compaction did not leave a failing statement behind
        assert_eq!(
            count("SELECT 1 FROM beacon.continuous_query WHERE last_error IS NOT NULL"),
            0
        );
    }

    /// Relation and column names pg_beacon's generated SQL uses as aliases, CTEs and state
    /// columns.
    const GENERATED_NAMES: [&str; 19] = [
        "m",
        "d",
        "s",
        "r",
        "u",
        "p",
        "i",
        "q",
        "x0",
        "one",
        "pending",
        "input",
        "upserted",
        "changes",
        "merged",
        "excluded",
        "beacon_new",
        "beacon_old",
        "true",
    ];

    #[pg_test]
    fn sources_and_columns_named_like_generated_aliases() {
        exec("SELECT beacon.create_project('shop')");
        let mut queries = Vec::new();
        for (t, table) in GENERATED_NAMES.iter().enumerate() {
            // every column is named like something generated, in the state or in a CTE
            exec(&format!(
                "CREATE TABLE shop.\"{table}\" (k0 text, _count int, _dirty boolean, v int, mult int,
                                             n int, dd int, a1_m int, a2_m int, x0 int, m int, d int)"
            ));
            let shapes = [
                format!("SELECT k0, count(*) AS c, max(v) AS top, min(_count) AS low, count(DISTINCT mult) AS dm FROM \"{table}\" GROUP BY k0"),
                format!("SELECT max(n) AS top, count(DISTINCT dd) AS dd, min(a1_m) AS low FROM \"{table}\""),
                format!("SELECT _dirty AS k0, m AS k1, max(d) AS top, min(x0) AS low FROM \"{table}\" WHERE a2_m > 0 GROUP BY 1, 2"),
            ];
            for mode in MODES {
                for (j, shape) in shapes.iter().enumerate() {
                    let name = format!("{}_{t}_{j}", &mode[..1]);
                    create(&name, shape, mode);
                    queries.push((format!("shop.{name}"), shape.clone()));
                }
            }
            exec(&format!(
                "INSERT INTO shop.\"{table}\"
                 SELECT 'g' || (i % 3), i % 5, i % 2 = 0, i, i % 4, i, i % 6, i, i % 3, i, i % 2, i
                   FROM generate_series(1, 60) i"
            ));
            exec(&format!(
                "DELETE FROM shop.\"{table}\" WHERE v > 50 OR n < 5 OR d = 30 OR x0 = 2"
            ));
            exec(&format!(
                "UPDATE shop.\"{table}\" SET k0 = 'g9', _count = _count + 10 WHERE v % 7 = 0"
            ));
        }
        assert_all_match(&queries, "before compaction");
        exec("SELECT beacon.compact()");
        assert_all_match(&queries, "after compaction");
    }

    #[pg_test]
    fn long_text_keys_and_distinct_values() {
        exec("SELECT beacon.create_project('shop')");
        exec("CREATE TABLE shop.docs (id bigserial PRIMARY KEY, body text, tag varchar, blob bytea, n int)");
        let shapes = [
            "SELECT body, count(*) AS c, max(n) AS top FROM docs GROUP BY body",
            "SELECT tag, blob, count(*) AS c FROM docs GROUP BY tag, blob",
            "SELECT n % 2 AS k, count(DISTINCT body) AS bodies, count(DISTINCT blob) AS blobs FROM docs GROUP BY 1",
            "SELECT count(DISTINCT tag) AS tags FROM docs",
        ];
        let mut queries = Vec::new();
        for mode in MODES {
            for (i, shape) in shapes.iter().enumerate() {
                let name = format!("{}_{i}", &mode[..1]);
                create(&name, shape, mode);
                queries.push((format!("shop.{name}"), shape.to_string()));
            }
        }
        // hex of md5s hardly compresses: each value is far over a btree entry's 2.7 kB
        let long = |seed: &str| {
            format!(
                "(SELECT string_agg(md5({seed} || '-' || g), '') FROM generate_series(1, 300) g)"
            )
        };
        for round in 0..3 {
            exec(&format!(
                "INSERT INTO shop.docs (body, tag, blob, n)
                 SELECT {}, {}, pg_catalog.convert_to({}, 'UTF8'), i
                   FROM generate_series(1, 4) i",
                long(&format!("'b{round}'")),
                long("'t' || (i % 2)"),
                long("'x' || (i % 3)"),
            ));
        }
        exec("INSERT INTO shop.docs (body, tag, blob, n) VALUES (NULL, NULL, NULL, 7), ('', '', '', 8)");
        assert!(
            one::<i32>("SELECT max(octet_length(body)) FROM shop.docs").unwrap() > 9000,
            "values long enough to break a plain btree entry"
        );
        assert_all_match(&queries, "after inserts");
        assert_eq!(
            count("SELECT 1 FROM shop.a_0 WHERE c = 4"),
            3,
            "one group per body"
        );
        exec("DELETE FROM shop.docs WHERE id % 3 = 0");
        exec("UPDATE shop.docs SET body = body || 'x' WHERE id % 4 = 1");
        assert_all_match(&queries, "after deletes and updates");
        exec("SELECT beacon.compact()");
        assert_all_match(&queries, "after compaction");
    }

    #[pg_test]
    fn system_columns_custom_types_and_nondeterministic_collations_are_refused() {
        setup();
        for column in ["ctid", "xmin", "tableoid"] {
            refused_query(
                &format!("SELECT {column} AS k, count(*) AS n FROM src GROUP BY 1"),
                "0A000",
                "system column",
            );
        }
        // (xid has no ordering, which count(DISTINCT) needs)
        for column in ["ctid", "tableoid"] {
            refused_query(
                &format!("SELECT count(DISTINCT {column}) AS n FROM src"),
                "0A000",
                "system column",
            );
        }
        refused_query(
            "SELECT country, count(*) AS n FROM src WHERE tableoid <> 0 GROUP BY country",
            "0A000",
            "system column",
        );
        // a type outside pg_catalog, whose = the generated SQL would not find
        exec("CREATE TYPE shop.mood AS ENUM ('sad', 'happy')");
        exec("CREATE DOMAIN shop.amount AS int");
        exec("ALTER TABLE shop.src ADD COLUMN mood shop.mood, ADD COLUMN amount shop.amount");
        refused_query(
            "SELECT mood, count(*) AS n FROM src GROUP BY mood",
            "42501",
            "shop.mood",
        );
        refused_query("SELECT max(mood) AS m FROM src", "42501", "shop.mood");
        refused_query(
            "SELECT count(DISTINCT amount) AS n FROM src",
            "42501",
            "shop.amount",
        );
        // a nondeterministic collation outside pg_catalog is refused as an object; one in
        // pg_catalog (only a superuser can put it there) because equal keys can differ
        // initdb imports ICU's collations (und-x-icu among them) only from a build with ICU
        if count("SELECT 1 FROM pg_collation WHERE collname = 'und-x-icu'") == 0 {
            return; // a server built without ICU has no nondeterministic collations
        }
        exec("CREATE COLLATION public.ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false)");
        exec("CREATE COLLATION pg_catalog.beacon_ci_test (provider = icu, locale = 'und-u-ks-level2', deterministic = false)");
        exec("ALTER TABLE shop.src ADD COLUMN name_ci text COLLATE public.ci, ADD COLUMN name_ci2 text COLLATE pg_catalog.beacon_ci_test");
        refused_query(
            "SELECT name_ci, count(*) AS n FROM src GROUP BY 1",
            "42501",
            "collation public.ci",
        );
        for query in [
            "SELECT name_ci2, count(*) AS n FROM src GROUP BY 1",
            "SELECT lower(name_ci2) AS k, count(*) AS n FROM src GROUP BY 1",
            "SELECT country, max(name_ci2) AS m FROM src GROUP BY country",
            "SELECT min(name_ci2) AS m FROM src",
            "SELECT country, count(DISTINCT name_ci2) AS n FROM src GROUP BY country",
        ] {
            refused_query(query, "0A000", "nondeterministic collation");
        }
        // counting such values involves no comparison of them
        create(
            "named",
            "SELECT country, count(name_ci2) AS n FROM src GROUP BY country",
            "immediate",
        );
        assert_eq!(
            count("SELECT 1 FROM pg_class WHERE relname = 'refused'"),
            0,
            "refusals leave nothing behind"
        );
    }

    #[pg_test]
    fn inheritance_and_partitions_are_refused() {
        setup();
        exec("CREATE TABLE shop.child (extra int) INHERITS (shop.src)");
        refused_query(
            "SELECT country, count(*) AS n FROM src GROUP BY country",
            "0A000",
            "inheritance children",
        );
        // the child alone is a table like any other
        create(
            "of_child",
            "SELECT country, count(*) AS n FROM child GROUP BY country",
            "immediate",
        );
        exec("CREATE TABLE shop.parted (k int, v int) PARTITION BY LIST (k)");
        exec("CREATE TABLE shop.parted_1 PARTITION OF shop.parted FOR VALUES IN (1)");
        refused_query(
            "SELECT k, count(*) AS n FROM parted GROUP BY k",
            "0A000",
            "partitioned table",
        );
        refused_query(
            "SELECT k, count(*) AS n FROM parted_1 GROUP BY k",
            "0A000",
            "is a partition",
        );
        // a source cannot become a parent later
        exec("CREATE TABLE shop.plain (id bigserial PRIMARY KEY, country text)");
        create(
            "of_plain",
            "SELECT country, count(*) AS n FROM plain GROUP BY country",
            "async",
        );
        refused(
            "CREATE TABLE shop.plain_child () INHERITS (shop.plain)",
            "0A000",
            "shop.plain",
        );
        exec("CREATE TABLE shop.orphan (id bigint NOT NULL, country text)");
        refused(
            "ALTER TABLE shop.orphan INHERIT shop.plain",
            "0A000",
            "shop.plain",
        );
        exec("CREATE TABLE shop.plain_parent (id bigint NOT NULL, country text) PARTITION BY RANGE (id)");
        refused(
            "ALTER TABLE shop.plain_parent ATTACH PARTITION shop.plain FOR VALUES FROM (0) TO (100)",
            "0A000",
            "shop.plain",
        );
        exec("SELECT beacon.drop_continuous_query('shop', 'of_plain')");
        exec("ALTER TABLE shop.orphan INHERIT shop.plain");
    }

    #[pg_test]
    fn renaming_or_moving_a_source_is_refused_and_read_columns_are_pinned() {
        setup();
        exec("CREATE SCHEMA elsewhere");
        for mode in MODES {
            create(
                &format!("by_country_{mode}"),
                "SELECT country, count(*) AS n, max(price) AS top FROM src GROUP BY country",
                mode,
            );
        }
        for ddl in [
            "ALTER TABLE shop.src RENAME COLUMN country TO land",
            "ALTER TABLE shop.src RENAME COLUMN price TO cost",
            "ALTER TABLE shop.src RENAME TO source",
            "ALTER TABLE IF EXISTS shop.src RENAME TO source",
            "ALTER TABLE shop.src SET SCHEMA elsewhere",
        ] {
            refused(ddl, "0A000", "shop.src");
        }
        // columns the queries read cannot be dropped or retyped (the columns view)
        refused(
            "ALTER TABLE shop.src DROP COLUMN country",
            "2BP01",
            "depend on it",
        );
        refused(
            "ALTER TABLE shop.src ALTER COLUMN price TYPE numeric",
            "0A000",
            "used by a view",
        );
        // other DDL on the source, renaming a column no query reads, and renaming other
        // tables are untouched
        exec("ALTER TABLE shop.src RENAME COLUMN qty TO quantity");
        exec("ALTER TABLE shop.src ADD COLUMN note text");
        exec("ALTER TABLE shop.src RENAME COLUMN note TO remark");
        exec("ALTER TABLE shop.src DROP COLUMN remark");
        exec("CREATE TABLE shop.other (a int)");
        exec("ALTER TABLE shop.other RENAME TO other2");
        // and every path still works
        exec("INSERT INTO shop.src (country, price) VALUES ('a', 1), ('b', 2), ('a', 3)");
        exec("DELETE FROM shop.src WHERE price = 3");
        exec("SELECT beacon.compact()");
        exec("SET LOCAL search_path = shop, public");
        for mode in MODES {
            assert_eq!(
                differences(
                    &format!("shop.by_country_{mode}"),
                    "SELECT country, count(*) AS n, max(price) AS top FROM src GROUP BY country"
                ),
                0
            );
        }
        exec("SET LOCAL search_path = pg_catalog, public");
        for mode in MODES {
            exec(&format!(
                "SELECT beacon.drop_continuous_query('shop', 'by_country_{mode}')"
            ));
        }
        // with no query left, the table is the user's again
        exec("ALTER TABLE shop.src RENAME COLUMN country TO land");
        exec("ALTER TABLE shop.src RENAME TO source");
        exec("ALTER TABLE shop.source SET SCHEMA elsewhere");
    }
}
