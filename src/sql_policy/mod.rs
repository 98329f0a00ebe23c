//! The decisive check on user SQL: what PostgreSQL will actually run, not only the text.
//!
//! The sqlparser-based checkers (`query::analyze`, `cq::analyze`, `stream::filter`) are a
//! friendly first barrier that names what it refuses, but they judge text, and PostgreSQL
//! reads text differently: `(x).f` is a call of `f(x)`, an unqualified type or operator
//! resolves through `search_path` (and `pg_temp` is searched first for types), and a cast
//! may name a caller-made domain whose CHECK runs a function. [`check`] therefore runs
//! PostgreSQL's own parser and parse analysis on the statement and walks the analyzed tree:
//! every function, operator, cast, type, collation and relation it resolved, by OID,
//! against one [`Policy`] per surface.
//!
//! Parse analysis resolves names in the session's current environment, so the check says
//! something only about a statement that later runs in the same environment (role,
//! `search_path`): callers check immediately before executing, under the same settings.

pub mod analyzed;
mod catalog;
pub(crate) mod lists;
pub mod text;

pub use analyzed::check;

use crate::names::quote_ident;
use lists::*;
use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};
use std::collections::BTreeSet;
use std::fmt;

/// What a refusal is about, which decides its SQLSTATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalKind {
    /// An object or construct the policy does not allow: 42501.
    Object,
    /// A size or nesting limit: 54001.
    Limit,
    /// Allowed SQL that the surface cannot maintain (a continuous query over a system
    /// column): 0A000.
    Unsupported,
    /// Text that does not parse: 42601.
    Syntax,
    /// The renderer could not print a checked tree back faithfully: XX000.
    Internal,
    /// A bare column name more than one table of the statement has: 42702.
    Ambiguous,
}

/// Why a statement is refused; the message names the refused object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub kind: RefusalKind,
    pub message: String,
}

impl Refusal {
    pub fn object(message: impl Into<String>) -> Refusal {
        Refusal {
            kind: RefusalKind::Object,
            message: message.into(),
        }
    }

    pub fn unsupported(message: impl Into<String>) -> Refusal {
        Refusal {
            kind: RefusalKind::Unsupported,
            message: message.into(),
        }
    }

    pub fn limit(message: impl Into<String>) -> Refusal {
        Refusal {
            kind: RefusalKind::Limit,
            message: message.into(),
        }
    }

    pub fn syntax(message: impl Into<String>) -> Refusal {
        Refusal {
            kind: RefusalKind::Syntax,
            message: message.into(),
        }
    }

    pub fn ambiguous(message: impl Into<String>) -> Refusal {
        Refusal {
            kind: RefusalKind::Ambiguous,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Refusal {
        Refusal {
            kind: RefusalKind::Internal,
            message: message.into(),
        }
    }

    pub fn sqlstate(&self) -> PgSqlErrorCode {
        match self.kind {
            RefusalKind::Object => PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            RefusalKind::Limit => PgSqlErrorCode::ERRCODE_STATEMENT_TOO_COMPLEX,
            RefusalKind::Unsupported => PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            RefusalKind::Syntax => PgSqlErrorCode::ERRCODE_SYNTAX_ERROR,
            RefusalKind::Internal => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            RefusalKind::Ambiguous => PgSqlErrorCode::ERRCODE_AMBIGUOUS_COLUMN,
        }
    }

    /// Raises the refusal as an ERROR with its SQLSTATE, the message after `prefix`
    /// ("query refused"), so that it reads like the first barrier's refusals.
    #[track_caller]
    pub fn raise(&self, prefix: &str) -> ! {
        ErrorReport::new(
            self.sqlstate(),
            format!("{prefix}: {}", self.message),
            "pg_beacon",
        )
        .report(PgLogLevel::ERROR);
        unreachable!("ERROR does not return")
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refusal {}

/// Tables whose names start with `_` that are meant to be read: the documented ones.
/// Every other `_` name in a project schema (`_cq_<name>_state`, `_cq_<name>_delta`, …)
/// is pg_beacon's bookkeeping, reachable only by the code that maintains it.
const READABLE_UNDERSCORED: &[&str] = &["_rejected", "_users", "_user_mailbox"];

/// Whether `table` (a name in a project schema) is one of pg_beacon's hidden tables.
pub fn is_hidden_table(table: &str) -> bool {
    table.starts_with('_') && !READABLE_UNDERSCORED.contains(&table)
}

/// The statement a stream filter is checked as: a condition over one collection's rows.
/// The parentheses keep the filter one condition, as wherever it is pasted later.
pub fn filter_statement(project: &str, collection: &str, filter: &str) -> String {
    format!(
        "SELECT 1 FROM {}.{} WHERE ({filter})",
        quote_ident(project),
        quote_ident(collection)
    )
}

/// What one surface of user SQL may use. Functions and operators are allowed by name, and
/// only when PostgreSQL resolved them to `pg_catalog` (or, for `beacon_functions`, to
/// pg_beacon's schema); types must be `pg_catalog` types of [`TYPES`] (or arrays of them),
/// `record`, or row types of relations the policy allows.
#[derive(Debug, Clone)]
pub struct Policy {
    /// How refusals name the surface ("query", "continuous query", …).
    pub(crate) surface: &'static str,
    /// The project schema: the only one whose relations may be read.
    pub(crate) schema: String,
    /// A filter reads exactly this table of the schema.
    pub(crate) only_table: Option<String>,
    pub(crate) functions: BTreeSet<&'static str>,
    pub(crate) beacon_functions: &'static [&'static str],
    pub(crate) operators: &'static [&'static str],
    /// Subqueries of any kind: sublinks, FROM subqueries, WITH, set operations.
    pub(crate) subqueries: bool,
    pub(crate) aggregates: bool,
    pub(crate) window_functions: bool,
    /// CURRENT_DATE, CURRENT_TIMESTAMP, LOCALTIME and friends.
    pub(crate) clock: bool,
    /// The statement must be [`filter_statement`]'s shape.
    pub(crate) filter_shape: bool,
    /// System columns (ctid, xmin, tableoid, …) and whole-row references.
    pub(crate) system_columns: bool,
}

impl Policy {
    fn new(surface: &'static str, project: &str, lists: &[&[&'static str]]) -> Policy {
        Policy {
            surface,
            schema: project.to_string(),
            only_table: None,
            functions: lists.iter().flat_map(|list| list.iter().copied()).collect(),
            beacon_functions: BEACON_FUNCTIONS,
            operators: QUERY_OPERATORS,
            subqueries: true,
            aggregates: true,
            window_functions: true,
            clock: true,
            filter_shape: false,
            system_columns: true,
        }
    }

    /// `beacon.query`: the lists `query::analyze` walks with.
    pub fn query(project: &str) -> Policy {
        Policy::new(
            "query",
            project,
            &[
                AGGREGATE_FUNCTIONS,
                WINDOW_FUNCTIONS,
                SCALAR_FUNCTIONS,
                SET_RETURNING_FUNCTIONS,
                RECORD_FUNCTIONS,
                QUERY_GRAMMAR_FUNCTIONS,
            ],
        )
    }

    /// Materialized views are refreshed by the owner, and pass the same checks as
    /// `beacon.query`.
    pub fn materialized_view(project: &str) -> Policy {
        Policy {
            surface: "materialized view",
            ..Policy::query(project)
        }
    }

    /// Continuous queries: the deterministic functions and maintainable aggregates of
    /// `cq::analyze`, no subqueries, no window functions, no clock.
    pub fn continuous_query(project: &str) -> Policy {
        Policy {
            operators: CQ_OPERATORS,
            subqueries: false,
            window_functions: false,
            clock: false,
            // a transition table has no system columns, and a whole row is not a key the
            // state can hold: every capture would fail
            system_columns: false,
            ..Policy::new(
                "continuous query",
                project,
                &[CQ_FUNCTIONS, CQ_AGGREGATES, CQ_GRAMMAR_FUNCTIONS],
            )
        }
    }

    /// A subscription filter on `<project>.<collection>`, checked as
    /// [`filter_statement`]: the functions and operators of `stream::filter`.
    pub fn stream_filter(project: &str, collection: &str) -> Policy {
        Policy {
            only_table: Some(collection.to_string()),
            beacon_functions: &[],
            operators: FILTER_OPERATORS,
            subqueries: false,
            aggregates: false,
            window_functions: false,
            clock: false,
            filter_shape: true,
            functions: filter_function_names().collect(),
            ..Policy::new("filter", project, &[])
        }
    }
}

/// `pg_catalog` base types a statement may compute with: the casts the checkers accept,
/// the column types collections get, what the allowed functions and operators return,
/// and the system columns' types. Not the `reg*` types (their input reads the catalogs),
/// `aclitem`, `pg_node_tree` or anything else that is about the database itself.
#[rustfmt::skip]
pub(crate) const TYPES: &[&str] = &[
    "bool", "int2", "int4", "int8", "numeric", "float4", "float8", "text", "varchar",
    "bpchar", "bytea", "date", "time", "timetz", "timestamp", "timestamptz", "interval",
    "json", "jsonb", "jsonpath", "uuid", "tsvector", "tsquery", "oid", "tid", "xid", "cid",
];

#[cfg(test)]
mod unit_tests {
    use super::*;

    /// Comparisons: written, and implied by IN, BETWEEN, CASE, NULLIF, IS DISTINCT FROM,
    /// ORDER BY, GROUP BY and DISTINCT.
    const COMPARISONS: [&str; 6] = ["=", "<>", "<", "<=", ">", ">="];

    #[test]
    fn hidden_tables_are_underscored_except_the_documented_ones() {
        for hidden in ["_cq_x_state", "_cq_x_delta", "_stream", "_", "_Users"] {
            assert!(is_hidden_table(hidden), "{hidden}");
        }
        for readable in ["events", "_users", "_user_mailbox", "_rejected", "a_b"] {
            assert!(!is_hidden_table(readable), "{readable}");
        }
    }

    #[test]
    fn a_filter_is_one_condition_on_one_quoted_table() {
        assert_eq!(
            filter_statement("alpha", "Page \"views\"", "price > 1"),
            r#"SELECT 1 FROM "alpha"."Page ""views""" WHERE (price > 1)"#
        );
    }

    #[test]
    fn policies_follow_their_surface() {
        let query = Policy::query("alpha");
        assert!(query.functions.contains("to_jsonb") && query.functions.contains("extract"));
        assert!(!query.functions.contains("pg_read_file"));
        assert!(!query.functions.contains("row_to_json"));
        let cq = Policy::continuous_query("alpha");
        assert!(!cq.subqueries && !cq.window_functions && !cq.functions.contains("now"));
        let filter = Policy::stream_filter("alpha", "events");
        assert_eq!(filter.only_table.as_deref(), Some("events"));
        assert!(!filter.aggregates && filter.filter_shape);
        for policy in [&query, &cq, &filter] {
            for op in COMPARISONS {
                assert!(policy.operators.contains(&op), "{} {op}", policy.surface);
            }
        }
        assert_eq!(
            Policy::materialized_view("alpha").functions,
            query.functions,
            "a materialized view is checked like beacon.query"
        );
    }

    #[test]
    fn every_query_function_passes_the_first_barrier_too() {
        // Both barriers read these lists, but the walker also judges how a name is
        // called; a listed name it refuses in every form would be dead weight.
        for name in AGGREGATE_FUNCTIONS
            .iter()
            .chain(SCALAR_FUNCTIONS)
            .chain(SET_RETURNING_FUNCTIONS)
        {
            // the first barrier also bounds some arities (age needs two arguments)
            let accepted = ["", "x", "x, x", "x, x, x"].iter().any(|args| {
                let sql = format!("SELECT {name}({args}) FROM t");
                crate::query::analyze::check_query(&sql, "p").is_ok()
            });
            assert!(accepted, "{name}");
        }
    }

    #[test]
    fn refusals_carry_their_sqlstate() {
        assert_eq!(
            Refusal::object("x").sqlstate(),
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE
        );
        assert_eq!(
            Refusal::limit("x").sqlstate(),
            PgSqlErrorCode::ERRCODE_STATEMENT_TOO_COMPLEX
        );
        assert_eq!(Refusal::object("why").to_string(), "why");
    }
}

#[cfg(any(test, feature = "pg_test"))]
mod tests;
