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
        !deleted.contains("max((price))"),
        "max is recomputed, not negated: {deleted}"
    );
    assert!(deleted.contains("true AS _dirty"), "{deleted}");
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
