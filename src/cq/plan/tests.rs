use super::*;
use crate::cq::analyze::analyze;

fn plan(query: &str, mode: Mode) -> Plan {
    let query = analyze(query).unwrap();
    Plan {
        project: "shop".into(),
        name: "v".into(),
        source: query.source_table.clone(),
        mode,
        query,
        output_types: vec![],
        arg_types: vec![],
        loose_keys: vec![],
        digests: BTreeMap::new(),
        join_types: Default::default(),
    }
}

#[test]
fn deletes_mark_groups_dirty_only_when_an_aggregate_cannot_be_subtracted() {
    let with_max = plan(
        "SELECT country, count(*), max(price) FROM src GROUP BY country",
        Mode::Async,
    );
    let deleted = with_max.capture(Rows::Deleted).join(";");
    assert!(deleted.contains("-count(*)"), "{deleted}");
    assert!(
        !deleted.contains("max((price)) AS a2_m"),
        "max is recomputed, not negated: {deleted}"
    );
    // a delete's group is recomputed even when the deleted rows are below its stored max:
    // that max may belong to a row a concurrent delete removes, whose merge may come first
    assert!(deleted.contains("true AS _dirty"), "{deleted}");
    // other non-subtractable partials are recomputed whatever was deleted
    let float_sum = plan(
        "SELECT country, max(price), beacon.approx_count_distinct(price) FROM src GROUP BY country",
        Mode::Async,
    );
    assert!(float_sum
        .capture(Rows::Deleted)
        .join(";")
        .contains("true AS _dirty"));
    let inserted = with_max.capture(Rows::Inserted).join(";");
    assert!(
        inserted.contains("max((price)) AS a2_m") && inserted.contains("false AS _dirty"),
        "{inserted}"
    );

    let sums = plan(
        "SELECT country, count(*), sum(price) FROM src GROUP BY country",
        Mode::Async,
    );
    let deleted = sums.capture(Rows::Deleted).join(";");
    assert!(
        deleted.contains("-sum((price))") && deleted.contains("false AS _dirty"),
        "{deleted}"
    );
}

#[test]
fn async_capture_appends_one_packed_row_per_statement() {
    let p = plan(
        "SELECT product, count(*), max(price) FROM src GROUP BY product",
        Mode::Async,
    );
    let statements = p.capture(Rows::Deleted);
    assert_eq!(statements.len(), 1);
    let s = &statements[0];
    assert!(
        s.starts_with("INSERT INTO \"shop\".\"_cq_v_delta\" (_rows) SELECT array_agg(ROW("),
        "{s}"
    );
    // the max partial is absent from a delete's partials: NULL in its place
    assert!(
        s.contains("ROW(p.k0, p._count, NULL, p._dirty)::\"shop\".\"_cq_v_state\""),
        "{s}"
    );
    assert!(s.ends_with("HAVING count(*) > 0"), "{s}");
}

#[test]
fn immediate_capture_appends_and_the_merge_at_commit_locks_in_key_order() {
    let p = plan(
        "SELECT a, b, count(*), min(x), count(DISTINCT y) AS d FROM src GROUP BY a, b",
        Mode::Immediate,
    );
    let statements = p.capture(Rows::Deleted);
    assert!(
        statements
            .iter()
            .all(|s| s.starts_with("INSERT INTO \"shop\".\"_cq_v_delta\"")
                || s.contains("pg_beacon.pending_merges")),
        "{statements:?}"
    );
    assert!(statements.iter().any(|s| s.contains("',shop.v,'")));
    let merge = p.create_merge_function("UTC", "");
    assert!(
        merge.contains(
            "DELETE FROM \"shop\".\"_cq_v_delta\" WHERE _xid = pg_catalog.pg_current_xact_id()"
        ),
        "{merge}"
    );
    // distinct multiplicities first, then the state, each in key order
    let distinct = merge
        .find("INSERT INTO \"shop\".\"_cq_v_d4\" AS t (k0, k1, v, mult) SELECT * FROM x4 ORDER BY 1, 2, 3")
        .expect(&merge);
    let state = merge
        .find("GROUP BY k0, k1 ORDER BY 1, 2 ON CONFLICT (k0, k1)")
        .expect(&merge);
    assert!(distinct < state, "{merge}");
    assert!(
        merge.contains("SET a3_m = r.a3_m, _dirty = false"),
        "{merge}"
    );
    assert!(
        merge.contains("DELETE FROM \"shop\".\"_cq_v_state\" WHERE ctid = ANY (beacon_empty)"),
        "{merge}"
    );
}

#[test]
fn a_global_views_recompute_join_comes_before_its_filter() {
    let p = plan("SELECT min(x) FROM src", Mode::Async);
    let view = p.create_view();
    assert!(view.contains("LEFT JOIN LATERAL"), "{view}");
    assert!(!view.contains("_delta\") LEFT JOIN"), "{view}");
}

#[test]
fn a_global_aggregate_has_one_constant_group() {
    let p = plan("SELECT count(*), sum(x) FROM src", Mode::Immediate);
    assert!(!p.defining_query().contains("GROUP BY"));
    assert!(p.capture(Rows::Inserted)[0].contains("SELECT true AS k0, count(*)"));
}

#[test]
fn user_expressions_are_parenthesized_and_conflict_targets_follow_digests() {
    let mut p = plan(
        "SELECT count(*), max(qty), count(DISTINCT a OR b) AS d FROM src WHERE a OR b GROUP BY price IS NULL, NOT flag",
        Mode::Immediate,
    );
    p.digests.insert("k1".into(), Digest::Text);
    p.digests.insert("d2".into(), Digest::Bytes);
    let mut all = p.capture(Rows::Deleted);
    // the merge: upserts and the recompute of dirty groups
    all.extend(p.compaction());
    let all = all.join(";");
    assert!(
        all.contains("(price IS NULL) AS k0, (NOT flag) AS k1"),
        "{all}"
    );
    assert!(all.contains("WHERE (a OR b)"), "{all}");
    assert!(all.contains(", (a OR b) AS v"), "{all}");
    assert!(
        all.contains("IS NOT DISTINCT FROM _beacon_row.k0"),
        "keys are compared as computed in the derived table: {all}"
    );
    assert!(
        all.contains("ON CONFLICT (k0, (beacon._text_digest(k1)), (pg_catalog.sha256(v)))"),
        "{all}"
    );
    assert!(
        all.contains("ON CONFLICT (k0, (beacon._text_digest(k1))) DO UPDATE"),
        "{all}"
    );
    let indexes = p.create_indexes();
    assert!(
        indexes[0].ends_with("(k0, (beacon._text_digest(k1))) NULLS NOT DISTINCT"),
        "{indexes:?}"
    );
    // the view's recompute of dirty groups, in its function
    let fresh = p
        .create_fresh_function(&Default::default(), "")
        .expect("max is recomputed");
    assert!(
        fresh.contains("WHERE (a OR b) AND ((price IS NULL)) IS NOT DISTINCT FROM $1"),
        "{fresh}"
    );
}

#[test]
fn identifiers_are_quoted() {
    let mut p = plan(
        "SELECT \"Country\", count(*) FROM \"Src\" GROUP BY 1",
        Mode::Async,
    );
    p.project = "we\"ird".into();
    assert_eq!(p.source_table(), "\"we\"\"ird\".\"Src\"");
    assert!(p
        .defining_query()
        .starts_with("SELECT \"Country\" AS \"Country\", count(*) AS \"count\""));
}

mod joins {
    use super::*;

    fn terms(p: &Plan, table: &str, event: Event) -> Vec<String> {
        p.join_capture(table, event)
            .into_iter()
            .filter(|s| s.starts_with("INSERT INTO"))
            .collect()
    }

    #[test]
    fn an_inner_join_replaces_the_changed_table_by_its_rows() {
        let p = plan(
            "SELECT p.category, count(*) AS n, sum(e.price) AS s FROM events e \
             JOIN products p ON p.id = e.product GROUP BY p.category",
            Mode::Async,
        );
        assert_eq!(p.tables(), vec!["events", "products"]);
        let inserted = terms(&p, "events", Event::Insert);
        assert_eq!(inserted.len(), 1);
        assert!(
            inserted[0].contains(r#"FROM beacon_new AS "e" JOIN "shop"."products" AS "p" ON "e"."product" = "p"."id""#),
            "{inserted:?}"
        );
        // an update subtracts the old rows and adds the new ones
        let updated = terms(&p, "products", Event::Update);
        assert_eq!(updated.len(), 2);
        assert!(
            updated[0].contains(r#"JOIN beacon_old AS "p""#) && updated[0].contains("-count(*)")
        );
        assert!(
            updated[1].contains(r#"JOIN beacon_new AS "p""#) && !updated[1].contains("-count(*)")
        );
    }

    #[test]
    fn a_self_join_counts_every_subset_of_its_occurrences_once() {
        let p = plan(
            "SELECT a.g, count(*) AS n FROM t a JOIN t b ON b.parent = a.id GROUP BY a.g",
            Mode::Async,
        );
        // insert: Δ⋈t + t⋈Δ − Δ⋈Δ
        let inserted = terms(&p, "t", Event::Insert);
        assert_eq!(inserted.len(), 3);
        let negative = inserted.iter().filter(|s| s.contains("-count(*)")).count();
        assert_eq!(negative, 1, "{inserted:?}");
        assert!(inserted.iter().any(|s| s
            .contains(r#"FROM beacon_new AS "a" JOIN beacon_new AS "b""#)
            && s.contains("-count(*)")));
        // update: 2 + 2 single terms, 4 pair terms
        assert_eq!(terms(&p, "t", Event::Update).len(), 8);
    }

    #[test]
    fn a_left_join_adds_the_rows_whose_match_flipped() {
        let p = plan(
            "SELECT p.category, count(*) AS n FROM events e \
             LEFT JOIN products p ON p.id = e.product GROUP BY p.category",
            Mode::Immediate,
        );
        let inserted = terms(&p, "products", Event::Insert);
        // the new rows joined (inner), then flips both ways
        assert_eq!(inserted.len(), 3, "{inserted:?}");
        assert!(inserted[0].contains(r#"JOIN beacon_new AS "p""#));
        assert!(inserted
            .iter()
            .any(|s| s.contains("_beacon_count = 0") && !s.contains("-count(*)")));
        assert!(inserted
            .iter()
            .any(|s| s.contains("_beacon_count > 0") && s.contains("-count(*)")));
        // the fact table's own changes keep the left join
        let facts = terms(&p, "events", Event::Insert);
        assert!(
            facts[0].contains(r#"FROM beacon_new AS "e" LEFT JOIN "shop"."products" AS "p""#),
            "{facts:?}"
        );
        assert!(p
            .join_capture("events", Event::Insert)
            .last()
            .is_some_and(|s| s.contains("pending_merges")));
    }

    #[test]
    fn locks_are_shared_from_the_parent_side_and_exclusive_from_the_child() {
        let p = plan(
            "SELECT c.region, count(*) AS n FROM events e JOIN products p ON p.id = e.product \
             JOIN countries c ON c.code = e.country GROUP BY c.region",
            Mode::Async,
        );
        let facts: Vec<String> = p.join_locks("events", Event::Insert);
        let locks: Vec<&String> = facts.iter().filter(|s| s.contains("advisory")).collect();
        assert_eq!(locks.len(), 2, "{facts:?}");
        assert!(locks
            .iter()
            .all(|s| s.contains("pg_advisory_xact_lock_shared")));
        let dims: Vec<String> = p.join_locks("products", Event::Update);
        let locks: Vec<&String> = dims.iter().filter(|s| s.contains("advisory")).collect();
        // its own edge exclusively, then across the facts it reaches to the countries
        assert_eq!(locks.len(), 2, "{dims:?}");
        assert!(locks[0].contains("pg_advisory_xact_lock(") && locks[1].contains("_shared("));
        // the same edge has the same lock in both
        let id = |s: &str| {
            s.split('(')
                .nth(1)
                .and_then(|r| r.split(',').next())
                .map(str::to_string)
        };
        assert!(facts
            .iter()
            .filter_map(|s| if s.contains("advisory") { id(s) } else { None })
            .any(|f| Some(f) == id(locks[0])));
        // every lock comes before the reads across its edge
        let read = dims
            .iter()
            .position(|s| s.contains(r#"FROM "shop"."events" t"#))
            .unwrap();
        let first_lock = dims.iter().position(|s| s.contains("advisory")).unwrap();
        assert!(first_lock < read, "{dims:?}");
        assert_eq!(
            p.lookup_columns(),
            vec![
                ("events".to_string(), "product".to_string()),
                ("products".to_string(), "id".to_string()),
                ("events".to_string(), "country".to_string()),
                ("countries".to_string(), "code".to_string()),
            ]
        );
    }

    fn lock_calls(statements: &[String]) -> Vec<(bool, String)> {
        statements
            .iter()
            .filter(|s| s.contains("advisory"))
            .map(|s| {
                let exclusive = s.contains("pg_advisory_xact_lock(");
                let id = s
                    .split("_lock")
                    .nth(1)
                    .and_then(|r| r.split('(').nth(1))
                    .and_then(|r| r.split(',').next())
                    .unwrap_or_default()
                    .to_string();
                (exclusive, id)
            })
            .collect()
    }

    #[test]
    fn a_leaf_locks_only_its_own_edge_exclusively() {
        // events -> products -> suppliers: a supplier change locks its edge exclusively
        // and the events-products edge shared, like the fact writers do
        let p = plan(
            "SELECT s.country, count(*) AS n FROM events e JOIN products p ON p.id = e.product \
             JOIN suppliers s ON s.id = p.supplier GROUP BY s.country",
            Mode::Async,
        );
        let leaf = lock_calls(&p.join_locks("suppliers", Event::Update));
        assert_eq!(leaf.len(), 2, "{leaf:?}");
        assert!(leaf[0].0 && !leaf[1].0, "{leaf:?}");
        let middle = lock_calls(&p.join_locks("products", Event::Update));
        assert_eq!(middle.len(), 2, "{middle:?}");
        // the middle table: exclusive up to the facts, shared down to the suppliers
        let up = middle.iter().find(|(_, id)| *id != leaf[0].1).unwrap();
        let down = middle.iter().find(|(_, id)| *id == leaf[0].1).unwrap();
        assert!(up.0 && !down.0, "{middle:?}");
        let facts = lock_calls(&p.join_locks("events", Event::Insert));
        assert!(facts.iter().all(|(exclusive, _)| !exclusive), "{facts:?}");
    }

    #[test]
    fn the_lock_of_an_edge_depends_on_its_direction() {
        let down = plan(
            "SELECT p.category, count(*) AS n FROM events e JOIN products p ON p.id = e.product \
             GROUP BY p.category",
            Mode::Async,
        );
        let up = plan(
            "SELECT p.category, count(*) AS n FROM products p JOIN events e ON p.id = e.product \
             GROUP BY p.category",
            Mode::Async,
        );
        let same = plan(
            "SELECT p.name, sum(e.price) AS n FROM events e JOIN products p ON e.product = p.id \
             GROUP BY p.name",
            Mode::Immediate,
        );
        let id = |p: &Plan| {
            lock_calls(&p.join_locks("events", Event::Insert))[0]
                .1
                .clone()
        };
        assert_ne!(id(&down), id(&up));
        assert_eq!(id(&down), id(&same));
        // rooted at the products, the events are the joined table and lock exclusively
        assert!(lock_calls(&up.join_locks("events", Event::Insert))[0].0);
    }
}
