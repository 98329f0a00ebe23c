//! Joins: what the analysis keeps of them (tree, equalities, qualified expressions) and
//! what it refuses, naming the part.

use super::super::*;
use super::{ok, refused};

fn with_columns(sql: &str) -> Result<ContinuousQuery, Refusal> {
    analyze_with(sql, &|table| match table {
        "events" => Some(vec![
            "id".into(),
            "product".into(),
            "country".into(),
            "price".into(),
        ]),
        "products" => Some(vec!["id".into(), "category".into(), "brand".into()]),
        "countries" => Some(vec!["code".into(), "region".into()]),
        _ => None,
    })
}

#[test]
fn a_star_join_keeps_its_tree_and_qualifies_every_column() {
    let q = ok(
        "SELECT c.region || '/' || p.category AS rc, count(*) AS n, max(e.price) AS top \
                FROM events e JOIN products p ON p.id = e.product \
                LEFT JOIN countries c ON e.country = c.code \
                WHERE e.price > 0 GROUP BY c.region || '/' || p.category",
    );
    assert_eq!(q.source_table, "events");
    assert_eq!(q.source_alias.as_deref(), Some("e"));
    assert_eq!(q.joins.len(), 2);
    assert_eq!(q.joins[0].table, "products");
    assert_eq!(q.joins[0].kind, JoinKind::Inner);
    assert_eq!(q.joins[0].parent, 0);
    assert_eq!(
        q.joins[0].pairs,
        vec![("product".to_string(), "id".to_string())]
    );
    assert_eq!(q.joins[1].kind, JoinKind::Left);
    assert_eq!(
        q.joins[1].pairs,
        vec![("country".to_string(), "code".to_string())]
    );
    assert_eq!(
        q.keys,
        vec![r#""c".region || '/' || "p".category"#.to_string()]
    );
    assert_eq!(q.filter.as_deref(), Some(r#""e".price > 0"#));
    assert_eq!(q.columns, vec!["country", "price", "product"]);
    assert_eq!(q.joins[0].columns, vec!["category", "id"]);
    assert_eq!(q.joins[1].columns, vec!["code", "region"]);
}

#[test]
fn a_snowflake_hangs_each_table_from_its_parent() {
    let q = ok(
        "SELECT g.name, count(*) AS n FROM f JOIN d ON d.id = f.d JOIN g ON g.id = d.g \
                GROUP BY g.name",
    );
    assert_eq!(q.joins[0].parent, 0);
    assert_eq!(q.joins[1].parent, 1);
    assert_eq!(q.joins[1].pairs, vec![("g".to_string(), "id".to_string())]);
}

#[test]
fn inner_joins_keep_their_other_conditions_and_several_equalities() {
    let q = ok(
        "SELECT a.x, count(*) AS n FROM a JOIN b ON b.k1 = a.k1 AND a.k2 = b.k2 AND b.live \
                GROUP BY a.x",
    );
    assert_eq!(q.joins[0].pairs.len(), 2);
    assert_eq!(q.joins[0].filter.as_deref(), Some(r#""b".live"#));
}

#[test]
fn self_joins_take_aliases() {
    let q = ok("SELECT a.g, count(*) AS n FROM t a JOIN t b ON b.parent = a.id GROUP BY a.g");
    assert_eq!(q.joins[0].table, "t");
    assert_eq!(q.joins[0].alias, "b");
    refused(
        "SELECT t.g, count(*) AS n FROM t JOIN t ON t.parent = t.id GROUP BY t.g",
        &["specified more than once"],
    );
    refused(
        "SELECT a.g, count(*) AS n FROM t a LEFT JOIN t b ON b.parent = a.id GROUP BY a.g",
        &["left-joined and also appears"],
    );
}

#[test]
fn bare_names_are_qualified_by_the_one_table_that_has_them() {
    let q = with_columns(
        "SELECT category, count(*) AS n, sum(price) AS s FROM events e \
         JOIN products p ON p.id = product GROUP BY category",
    )
    .unwrap();
    assert_eq!(q.keys, vec![r#""p".category"#.to_string()]);
    assert_eq!(
        q.joins[0].pairs,
        vec![("product".to_string(), "id".to_string())]
    );
    let ambiguous = with_columns(
        "SELECT id, count(*) AS n FROM events e JOIN products p ON p.id = e.product GROUP BY id",
    )
    .unwrap_err();
    assert_eq!(ambiguous.kind, crate::sql_policy::RefusalKind::Ambiguous);
    assert!(
        ambiguous.message.contains("\"id\" is ambiguous"),
        "{ambiguous}"
    );
    refused(
        "SELECT category, count(*) AS n FROM events e JOIN products p ON p.id = e.product \
         GROUP BY category",
        &["qualify column \"category\""],
    );
}

#[test]
fn refuses_joins_it_cannot_maintain_naming_them() {
    for (sql, needle) in [
        ("SELECT a.x, count(*) FROM a RIGHT JOIN b ON b.id = a.id GROUP BY a.x", "RIGHT JOIN"),
        ("SELECT a.x, count(*) FROM a FULL JOIN b ON b.id = a.id GROUP BY a.x", "FULL JOIN"),
        ("SELECT a.x, count(*) FROM a CROSS JOIN b GROUP BY a.x", "CROSS JOIN"),
        ("SELECT a.x, count(*) FROM a NATURAL JOIN b GROUP BY a.x", "NATURAL JOIN"),
        ("SELECT a.x, count(*) FROM a JOIN b ON b.v < a.v GROUP BY a.x", "non-equi"),
        ("SELECT a.x, count(*) FROM a JOIN b ON true GROUP BY a.x", "needs an equality"),
        (
            "SELECT a.x, count(*) FROM a LEFT JOIN b ON b.id = a.id AND b.live GROUP BY a.x",
            "may only hold equalities",
        ),
        (
            "SELECT a.x, count(*) FROM a JOIN b ON b.id = a.id JOIN c ON c.id = a.id AND c.k = b.k GROUP BY a.x",
            "two earlier tables",
        ),
        (
            "SELECT a.x, count(*) FROM a JOIN (b JOIN c ON c.id = b.id) ON b.id = a.id GROUP BY a.x",
            "parenthesized joins",
        ),
        (
            "SELECT a.x, count(*) FROM a JOIN (SELECT * FROM b) s ON s.id = a.id GROUP BY a.x",
            "subqueries",
        ),
        (
            "SELECT a.x, count(*) FROM a JOIN b ON b.id = (SELECT 1) GROUP BY a.x",
            "subqueries",
        ),
        ("SELECT z.x, count(*) FROM a JOIN b ON b.id = a.id GROUP BY z.x", "does not refer to a table"),
        (
            "SELECT a.x, count(*) FROM a JOIN b ON b.id = a.id AND count(*) > 0 GROUP BY a.x",
            "aggregate functions are not allowed",
        ),
    ] {
        refused(sql, &[needle]);
    }
}
