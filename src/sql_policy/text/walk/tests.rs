//! The walker under each surface's settings, through a surface that takes every name as
//! a column: what the settings switch, and that chains cost neither levels nor stack.

use super::*;
use crate::sql_policy::text::parse;
use crate::sql_policy::RefusalKind;
use sqlparser::ast::{CastKind, TypedString};

struct Any {
    settings: &'static Settings,
    walk: WalkState,
    subqueries: usize,
}

impl Surface for Any {
    fn settings(&self) -> &'static Settings {
        self.settings
    }
    fn state(&mut self) -> &mut WalkState {
        &mut self.walk
    }
    fn max_depth(&self) -> usize {
        2_000
    }
    fn too_deep(&self) -> Refusal {
        Refusal::limit("too deep")
    }
    fn column(&mut self, ident: &mut Ident, _reference: bool) -> Result<(), Refusal> {
        check_ident(ident)
    }
    fn qualified_column(&mut self, _expr: &mut Expr) -> Result<(), Refusal> {
        Ok(())
    }
    fn subquery(&mut self, _query: &mut Query) -> Result<(), Refusal> {
        self.subqueries += 1;
        if self.settings.subqueries {
            Ok(())
        } else {
            Err(self.refusal(format!(
                "subqueries are not allowed{}",
                self.settings.suffix
            )))
        }
    }
    fn literal(&mut self, value: &mut ValueWithSpan) -> Result<(), Refusal> {
        query_literal(value)
    }
    fn cast_type(&mut self, data_type: &mut DataType) -> Result<(), Refusal> {
        check_type(data_type)
    }
    fn typed_string(&mut self, expr: &mut Expr) -> Result<(), Refusal> {
        match expr {
            Expr::TypedString(TypedString { data_type, .. }) => check_type(data_type),
            _ => Err(self.form_refused(expr)),
        }
    }
}

fn walked(settings: &'static Settings, sql: &str) -> Result<String, Refusal> {
    let mut expr = parse::expression(sql, &parse::Limits::QUERY)?.expect("an expression");
    let mut surface = Any {
        settings,
        walk: WalkState::default(),
        subqueries: 0,
    };
    expr::expr(&mut surface, &mut expr)?;
    assert_eq!(
        surface.walk.depth, 0,
        "the walk leaves its state as it found it"
    );
    assert_eq!(surface.walk.level, 0);
    Ok(expr.to_string())
}

fn refusal(settings: &'static Settings, sql: &str) -> String {
    match walked(settings, sql) {
        Ok(rendered) => panic!("{sql} was accepted as {rendered}"),
        Err(refusal) => {
            assert_eq!(refusal.kind, RefusalKind::Object, "{sql}: {refusal}");
            refusal.message
        }
    }
}

#[test]
fn forms_follow_the_settings() {
    for sql in [
        "CASE WHEN a THEN 1 END",
        "a = ANY (b)",
        "EXTRACT(YEAR FROM a)",
        "SUBSTRING(a FROM 1 FOR 2)",
        "TRIM(a)",
        "a AT TIME ZONE 'UTC'",
        "CEIL(a)",
        "a SIMILAR TO 'x'",
        "a[1]",
        "ARRAY[1, 2]",
        "(a, b)",
        "INTERVAL '1' DAY",
        "(SELECT 1)",
        "EXISTS (SELECT 1)",
        "current_timestamp",
    ] {
        walked(&QUERY, sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let message = refusal(&FILTER, sql);
        assert!(message.contains("not allowed"), "{sql}: {message}");
    }
}

#[test]
fn refusals_name_what_they_refuse_and_the_surface() {
    for (sql, named) in [
        ("pg_sleep(1)", "pg_sleep()"),
        ("pg_catalog.pg_sleep(1)", "pg_catalog.pg_sleep()"),
        ("a ~ 'x'", "~"),
        ("|/ a", "|/"),
        ("current_user", "current_user"),
    ] {
        let message = refusal(&FILTER, sql);
        assert!(message.contains(named), "{sql}: {message}");
        assert!(message.contains("in a filter"), "{sql}: {message}");
    }
    assert!(refusal(&FILTER, "lower(a, a)").contains("lower() takes 1 argument(s), not 2"));
    assert!(refusal(&QUERY, "pg_sleep(1)").contains("pg_sleep()"));
    assert!(refusal(&QUERY, "age(a)").contains("age()"));
    assert!(refusal(&QUERY, "session_user").contains("session_user"));
}

#[test]
fn functions_render_pinned_to_their_schema() {
    assert_eq!(
        walked(&QUERY, "LOWER(a)").unwrap(),
        "pg_catalog.\"lower\"(a)"
    );
    assert_eq!(
        walked(&QUERY, "approx_count_distinct(a)").unwrap(),
        "beacon.\"approx_count_distinct\"(a)"
    );
    assert_eq!(walked(&FILTER, "LOWER(a)").unwrap(), "pg_catalog.lower(a)");
    // a construct stays a construct, and the filter recognizes it in any spelling
    assert_eq!(walked(&QUERY, "coalesce(a, 1)").unwrap(), "coalesce(a, 1)");
    assert_eq!(
        walked(&FILTER, "pg_catalog.\"coalesce\"(a, 1)").unwrap(),
        "COALESCE(a, 1)"
    );
    assert!(refusal(&QUERY, "pg_catalog.coalesce(a, 1)").contains("coalesce()"));
    // grammar that would print as a search_path lookup becomes a pinned call
    assert_eq!(walked(&QUERY, "CEIL(a)").unwrap(), "pg_catalog.\"ceil\"(a)");
}

#[test]
fn plain_calls_refuse_every_clause() {
    for sql in [
        "lower(DISTINCT a)",
        "lower(a ORDER BY a)",
        "lower(a) FILTER (WHERE a)",
        "lower(a) OVER ()",
    ] {
        assert!(refusal(&FILTER, sql).contains("plain call"), "{sql}");
    }
    assert!(refusal(&FILTER, "date_trunc(field => 'day', source => a)").contains("named"));
    assert!(refusal(&FILTER, "coalesce(*)").contains("cannot take *"));
    walked(&QUERY, "count(DISTINCT a) FILTER (WHERE a)").unwrap();
    walked(&QUERY, "make_interval(days => 1)").unwrap();
}

#[test]
fn levels_count_nesting_but_not_chains() {
    let max = FILTER.max_levels.expect("filters bound their levels");
    let nots = |n: usize| format!("{}a", "NOT ".repeat(n));
    walked(&FILTER, &nots(max - 1)).unwrap();
    assert!(walked(&FILTER, &nots(max)).is_err());
    let chain = vec!["a = 1"; 2 * max].join(" OR ");
    walked(&FILTER, &chain).unwrap();
    // the query counts recursion only, for the stack
    walked(&QUERY, &nots(max + 20)).unwrap();
    let casts = format!("a{}", "::text".repeat(400));
    walked(&QUERY, &casts).unwrap();
}

#[test]
fn prefix_operators_never_print_as_a_comment() {
    assert_eq!(walked(&QUERY, "- -1").unwrap(), "-(-1)");
    assert_eq!(walked(&FILTER, "- +a").unwrap(), "-(+a)");
    assert_eq!(walked(&FILTER, "a - -1").unwrap(), "a - -1");
}

#[test]
fn casts_go_through_the_surface() {
    let mut expr = parse::expression("a::regclass", &parse::Limits::QUERY)
        .unwrap()
        .unwrap();
    assert!(matches!(
        expr,
        Expr::Cast {
            kind: CastKind::DoubleColon,
            ..
        }
    ));
    let mut surface = Any {
        settings: &QUERY,
        walk: WalkState::default(),
        subqueries: 0,
    };
    let refused = expr::expr(&mut surface, &mut expr).unwrap_err();
    assert!(refused.message.contains("regclass"), "{refused}");
}

#[test]
fn subqueries_are_the_surface_s_to_judge() {
    let mut surface = Any {
        settings: &QUERY,
        walk: WalkState::default(),
        subqueries: 0,
    };
    let mut expr = parse::expression(
        "a IN (SELECT 1) AND EXISTS (SELECT 2) OR ARRAY(SELECT 3) IS NULL",
        &parse::Limits::QUERY,
    )
    .unwrap()
    .unwrap();
    expr::expr(&mut surface, &mut expr).unwrap();
    assert_eq!(surface.subqueries, 3);
}
