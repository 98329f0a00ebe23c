//! The settings of each surface, next to each other: what differs between them is here
//! and in `sql_policy::lists`, which these point at.

use super::super::super::lists::*;
use super::names::{query_operator, query_unary_operator};
use super::{FunctionNames, Settings};
use sqlparser::ast::{BinaryOperator, UnaryOperator};

fn no_hint() -> String {
    ": only built-in functions from the allow-list can be called".to_string()
}

/// `beacon.query` and materialized views.
pub static QUERY: Settings = Settings {
    suffix: "",
    subqueries: true,
    clock: true,
    case: true,
    any_all: true,
    grammar: true,
    text_grammar: true,
    pin_grammar_calls: true,
    structured: true,
    interval_fields: true,
    plain_calls: false,
    operators: query_operator,
    unary_operators: query_unary_operator,
    functions: &[AGGREGATE_FUNCTIONS, WINDOW_FUNCTIONS, SCALAR_FUNCTIONS],
    beacon_functions: BEACON_FUNCTIONS,
    set_returning: SET_RETURNING_FUNCTIONS,
    // age(x) measures from the current date, which is rarely what an analysis means;
    // age(a, b) is pure.
    arity: &[("age", 2, Some(2))],
    constructs: super::KEYWORD_CONSTRUCTS,
    constructs_any_spelling: false,
    function_names: FunctionNames::Quoted,
    max_levels: None,
    function_hint: no_hint,
};

fn filter_operator(op: &BinaryOperator) -> bool {
    use BinaryOperator as B;
    matches!(
        op,
        B::Eq
            | B::NotEq
            | B::Lt
            | B::LtEq
            | B::Gt
            | B::GtEq
            | B::Plus
            | B::Minus
            | B::Multiply
            | B::Divide
            | B::Modulo
            | B::StringConcat
            | B::And
            | B::Or
            | B::Arrow
            | B::LongArrow
    )
}

fn filter_unary_operator(op: UnaryOperator) -> bool {
    matches!(
        op,
        UnaryOperator::Not | UnaryOperator::Minus | UnaryOperator::Plus
    )
}

fn filter_hint() -> String {
    format!(
        " (allowed: {})",
        filter_function_names().collect::<Vec<_>>().join(", ")
    )
}

/// Subscription filters, pasted into every inserting session's trigger: plain calls of
/// a few functions, no subqueries, no clock, 64 levels.
pub static FILTER: Settings = Settings {
    suffix: " in a filter",
    subqueries: false,
    clock: false,
    case: false,
    any_all: false,
    grammar: false,
    text_grammar: false,
    pin_grammar_calls: true,
    structured: false,
    interval_fields: false,
    plain_calls: true,
    operators: filter_operator,
    unary_operators: filter_unary_operator,
    functions: &[],
    beacon_functions: &[],
    set_returning: &[],
    arity: FILTER_FUNCTIONS,
    constructs: &["coalesce"],
    constructs_any_spelling: true,
    function_names: FunctionNames::Qualified,
    max_levels: Some(crate::sql_policy::text::Limits::FILTER.levels),
    function_hint: filter_hint,
};

fn cq_operator(op: &BinaryOperator) -> bool {
    use BinaryOperator as B;
    matches!(
        op,
        B::Plus
            | B::Minus
            | B::Multiply
            | B::Divide
            | B::Modulo
            | B::PGExp
            | B::StringConcat
            | B::Eq
            | B::NotEq
            | B::Lt
            | B::LtEq
            | B::Gt
            | B::GtEq
            | B::And
            | B::Or
            | B::Arrow
            | B::LongArrow
            | B::HashArrow
            | B::HashLongArrow
    )
}

fn cq_hint() -> String {
    ": continuous queries need deterministic expressions".to_string()
}

/// Continuous queries: their expressions are re-evaluated by the capture code against a
/// transition table, under a pinned search_path, and compared as text: deterministic
/// functions only, rendered unqualified and folded; no subqueries, no clock.
pub static CONTINUOUS_QUERY: Settings = Settings {
    suffix: " in a continuous query",
    subqueries: false,
    clock: false,
    case: true,
    any_all: false,
    grammar: true,
    text_grammar: false,
    pin_grammar_calls: false,
    structured: false,
    interval_fields: true,
    plain_calls: true,
    operators: cq_operator,
    unary_operators: filter_unary_operator,
    functions: &[CQ_FUNCTIONS],
    beacon_functions: &[],
    set_returning: &[],
    arity: &[],
    constructs: CQ_CALL_SYNTAX,
    constructs_any_spelling: false,
    function_names: FunctionNames::Unqualified,
    max_levels: None,
    function_hint: cq_hint,
};
