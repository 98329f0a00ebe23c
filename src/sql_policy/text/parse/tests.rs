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

