//! The one default-deny walker over user SQL expressions, driven by a surface
//! description.
//!
//! Every surface (`beacon.query` and materialized views, continuous queries, subscription
//! filters) walks its expressions here: every `match` over a syntax node lists what is
//! allowed and refuses the rest, so syntax a future sqlparser adds is refused instead of
//! slipping through. What differs between surfaces is data in [`Settings`] (which
//! functions by name and arity, which operators, which clauses and forms) and a few hooks
//! of [`Surface`] (which columns exist and how they are rewritten, literals and types as
//! the surface renders them, what a subquery means there, how refusals name the surface).
//!
//! Chains (`a + b + c ...`, `x LIKE y LIKE z ...`, `v::a::b ...`) are walked in a loop
//! along their first operand, so they cost no recursion however long they are.

mod call;
mod expr;
mod names;
mod surfaces;

pub use call::{function_arg, order_by_expr, wildcard_options, window_spec};
pub use expr::{expr, exprs, identifier};
pub use names::*;
pub use surfaces::{CONTINUOUS_QUERY, FILTER, QUERY};

use super::super::Refusal;
use sqlparser::ast::{
    BinaryOperator, DataType, Expr, Ident, Query, Select, SelectFlavor, UnaryOperator,
    ValueWithSpan,
};

/// What a surface allows, as data: allowing a function is one line in
/// `sql_policy::lists`, which these point at.
#[derive(Debug)]
pub struct Settings {
    /// Appended to refusals to name the surface (" in a filter"); empty for `beacon.query`,
    /// whose refusals are prefixed by the caller.
    pub suffix: &'static str,
    /// Subqueries in expressions (scalar, EXISTS, IN, ANY/ALL, ARRAY(...)).
    pub subqueries: bool,
    /// CURRENT_DATE, CURRENT_TIMESTAMP, LOCALTIME and friends.
    pub clock: bool,
    pub case: bool,
    /// `x = ANY (...)`, `x > ALL (...)`.
    pub any_all: bool,
    /// EXTRACT, SUBSTRING, TRIM, AT TIME ZONE, CEIL/FLOOR.
    pub grammar: bool,
    /// OVERLAY, POSITION, SIMILAR TO.
    pub text_grammar: bool,
    /// CEIL(x), FLOOR(x) and SUBSTRING(x, a, b), which print as search_path lookups,
    /// become `pg_catalog` calls; else they are kept as written (a surface whose text
    /// runs under a pinned search_path).
    pub pin_grammar_calls: bool,
    /// Subscripts, field access, `ARRAY[...]`, row constructors, grouping sets.
    pub structured: bool,
    /// `INTERVAL '1' DAY` and intervals of expressions, beyond `interval '1 day'`.
    pub interval_fields: bool,
    /// Calls must be plain: no DISTINCT, ORDER BY, FILTER, WITHIN GROUP, OVER, named
    /// arguments or `*`.
    pub plain_calls: bool,
    pub operators: fn(&BinaryOperator) -> bool,
    pub unary_operators: fn(UnaryOperator) -> bool,
    /// Functions of `pg_catalog` the surface may call, in any of these lists.
    pub functions: &'static [&'static [&'static str]],
    /// Functions of the `beacon` schema (rendered `beacon."name"`).
    pub beacon_functions: &'static [&'static str],
    pub set_returning: &'static [&'static str],
    /// Bounds on the number of arguments: fewest, most (`None`: no bound). A function
    /// listed here is allowed even if no list of `functions` has it.
    pub arity: &'static [(&'static str, usize, Option<usize>)],
    /// What the grammar turns into expressions before any function lookup (COALESCE,
    /// NULLIF, …): kept unqualified.
    pub constructs: &'static [&'static str],
    /// Constructs are recognized however they are spelled (`pg_catalog.coalesce`,
    /// `"coalesce"`), and rendered in upper case.
    pub constructs_any_spelling: bool,
    /// How allowed functions are rendered.
    pub function_names: FunctionNames,
    /// Most levels of nesting an expression may have (a chain of binary operators is one
    /// level), beyond the stack backstop every walk has.
    pub max_levels: Option<usize>,
    /// What a refusal of a function adds (the list, or why).
    pub function_hint: fn() -> String,
}

impl Settings {
    pub(crate) fn function_allowed(&self, name: &str) -> bool {
        self.functions.iter().any(|list| list.contains(&name))
            || self.arity.iter().any(|(allowed, ..)| *allowed == name)
    }
}

/// How an allowed function's name is rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionNames {
    /// `pg_catalog."name"`.
    Quoted,
    /// `pg_catalog.name`.
    Qualified,
    /// `name`, folded: for text that runs under a pinned search_path (continuous
    /// queries' capture code), where keys are compared as text.
    Unqualified,
}

/// Where an operand's type may come from its context, so that an untyped literal there
/// may be read as a date or a time.
#[derive(Debug, Clone, Copy)]
pub enum Context<'a> {
    Operator(&'a BinaryOperator),
    Cast,
    Extract,
    AtTimeZone,
    /// IS DISTINCT FROM, IN, BETWEEN.
    Comparison,
    /// An argument of this (allowed) function or construct.
    Argument(&'a str),
}

/// How deep a walk is: recursion (bounded for the stack) and levels of nesting.
#[derive(Debug, Default, Clone)]
pub struct WalkState {
    pub depth: usize,
    pub level: usize,
}

/// A surface of user SQL: its [`Settings`] and what the walk asks it about.
pub trait Surface {
    fn settings(&self) -> &'static Settings;
    fn state(&mut self) -> &mut WalkState;
    /// The recursion bound, a backstop for the stack.
    fn max_depth(&self) -> usize;
    fn too_deep(&self) -> Refusal;
    /// A refusal of this surface, of the kind it raises for what it does not allow.
    fn refusal(&self, message: String) -> Refusal {
        Refusal::object(message)
    }
    /// A bare name: a column (`reference`), or in GROUP BY / ORDER BY perhaps an output
    /// name. Keywords (session, clock) are handled before.
    fn column(&mut self, ident: &mut Ident, reference: bool) -> Result<(), Refusal>;
    /// A bare column reference (`expr` is an `Expr::Identifier`) once `column` accepted it,
    /// which the surface may rewrite (qualify it with the table it belongs to).
    fn bare_column(&mut self, _expr: &mut Expr) -> Result<(), Refusal> {
        Ok(())
    }
    /// A qualified name (`expr` is an `Expr::CompoundIdentifier`), which the surface may
    /// rewrite.
    fn qualified_column(&mut self, expr: &mut Expr) -> Result<(), Refusal>;
    /// A subquery in an expression.
    fn subquery(&mut self, query: &mut Query) -> Result<(), Refusal>;
    fn literal(&mut self, value: &mut ValueWithSpan) -> Result<(), Refusal>;
    /// A cast's target type, checked and perhaps rewritten.
    fn cast_type(&mut self, data_type: &mut DataType) -> Result<(), Refusal>;
    /// `type 'string'` (`expr` is an `Expr::TypedString`).
    fn typed_string(&mut self, expr: &mut Expr) -> Result<(), Refusal>;
    /// A form the settings do not allow, or no surface does.
    fn form_refused(&self, expr: &Expr) -> Refusal {
        match expr {
            Expr::Collate { .. } => {
                self.refusal(format!("COLLATE is not allowed{}", self.settings().suffix))
            }
            other => self.refusal(format!(
                "the expression {} is not allowed{}",
                super::parse::excerpt(other),
                self.settings().suffix
            )),
        }
    }
    /// A keyword reading the session (or the clock, where the clock is not allowed).
    fn keyword_refused(&self, keyword: &str) -> Refusal {
        self.refusal(format!(
            "{keyword} is not allowed{}: it reads session state",
            self.settings().suffix
        ))
    }
    /// Told of every set-returning call the walk allows.
    fn set_returning_call(&mut self) {}
    /// Every call, before the walk resolves it: a surface may refuse what it knows
    /// more about (aggregates where they do not belong, window calls).
    fn check_call(&mut self, _function: &sqlparser::ast::Function) -> Result<(), Refusal> {
        Ok(())
    }
    /// An operand whose type may come from `context`, before it is walked.
    fn context_typed(&mut self, _operand: &Expr, _context: Context) -> Result<(), Refusal> {
        Ok(())
    }
}

/// Whether a SELECT uses clauses of other SQL dialects, which no surface accepts
/// (TOP, LATERAL VIEW and QUALIFY are left to the surfaces, which name them). Destructured
/// in full so that a clause a future sqlparser adds fails to compile here instead of
/// being silently allowed everywhere.
pub fn foreign_select_clauses(select: &Select) -> bool {
    let Select {
        select_token: _,
        optimizer_hints,
        distinct: _,
        select_modifiers,
        top: _,
        top_before_distinct: _,
        projection: _,
        exclude,
        into: _,
        from: _,
        lateral_views: _,
        prewhere,
        selection: _,
        connect_by,
        group_by: _,
        cluster_by,
        distribute_by,
        sort_by,
        having: _,
        named_window: _,
        qualify: _,
        window_before_qualify: _,
        value_table_mode,
        flavor,
    } = select;
    !optimizer_hints.is_empty()
        || select_modifiers.is_some()
        || exclude.is_some()
        || prewhere.is_some()
        || !connect_by.is_empty()
        || !cluster_by.is_empty()
        || !distribute_by.is_empty()
        || !sort_by.is_empty()
        || value_table_mode.is_some()
        || *flavor != SelectFlavor::Standard
}

#[cfg(test)]
mod tests;
