use super::*;

#[test]
fn nesting_cost_bounds_chains() {
    let cost = |sql: &str| {
        let tokens = Tokenizer::new(&DIALECT, sql)
            .tokenize_with_location()
            .unwrap();
        nesting_cost(&tokens)
    };
    assert!(cost("select a, b, c, d, e, f from t") < 10);
    assert!(cost(&format!("select 1{}", "+1".repeat(500))) >= 500);
    // Commas end operator chains, but not chains of set operations.
    assert!(cost(&format!("select {}", "1+1, ".repeat(500))) < 10);
    assert!(cost(&format!("select 1, 2{}", " union select 1, 2".repeat(500))) >= 500);
    // The chain outside a group adds to the chain inside it.
    assert!(
        cost(&format!(
            "select ({}) {}",
            "1+".repeat(300) + "1",
            "+1".repeat(300)
        )) >= 600
    );
}

#[test]
fn every_surface_refuses_with_one_kind_per_reason() {
    use crate::sql_policy::{Refusal, RefusalKind as K};
    fn kind(result: Result<(), Refusal>) -> K {
        result.expect_err("refused").kind
    }
    let query = |sql: &str| crate::query::analyze::check_query(sql, "p").map(|_| ());
    let cq = |sql: &str| crate::cq::analyze::analyze(sql).map(|_| ());
    let filter = |sql: &str| crate::stream::filter::check_filter(sql, &["price"]).map(|_| ());
    let chain = format!("1{}", "+1".repeat(30_000));
    let long = "x".repeat(200_000);
    let cases = [
        (query("SELEC 1"), K::Syntax),
        (query(&format!("SELECT {chain}")), K::Limit),
        (query(&long), K::Limit),
        (query("SELECT pg_sleep(1)"), K::Object),
        (cq("SELECT count(* FROM t"), K::Syntax),
        (
            cq(&format!("SELECT count(*), sum({chain}) FROM t")),
            K::Limit,
        ),
        (cq(&long), K::Limit),
        (cq("SELECT count(*) FROM t LIMIT 1"), K::Unsupported),
        (filter("price >"), K::Syntax),
        (filter(""), K::Syntax),
        (filter(" -- nothing"), K::Syntax),
        (
            filter(&format!(
                "{}price > 1{}",
                "(".repeat(3000),
                ")".repeat(3000)
            )),
            K::Limit,
        ),
        (filter(&long), K::Limit),
        (filter("pg_sleep(1) IS NULL"), K::Object),
    ];
    for (i, (result, expected)) in cases.into_iter().enumerate() {
        assert_eq!(kind(result), expected, "case {i}");
    }
}
