//! A continuous query's expressions as a surface of the shared walker: the source
//! table's columns, unqualified; aggregates only as select items; deterministic
//! functions and literals only.

use super::*;
use crate::sql_policy::text::walk::{self as shared, Context, Settings, Surface, WalkState};
use sqlparser::ast::{DataType, ValueWithSpan};

/// Backstop for the walk, which recurses once per level of nesting (chains are walked in
/// loops); the parser's limits bound the nesting long before.
const MAX_WALK_DEPTH: usize = LIMITS.max_nesting_cost + 4 * LIMITS.recursion_limit;

pub(super) struct Expressions<'c, 'p> {
    pub(super) cx: &'c mut Cx,
    pub(super) place: Place<'p>,
    pub(super) walk: WalkState,
}

impl Expressions<'_, '_> {
    /// Validates `expr` and rewrites it in place into the form the capture code can run
    /// against a transition table: column references unqualified and case-folded,
    /// function names case-folded.
    pub(super) fn normalize(&mut self, expr: &mut Expr) -> Result<(), Refusal> {
        // every refusal of a continuous query's expressions is about SQL it cannot
        // maintain, as before the walk was shared
        shared::expr(self, expr).map_err(|refusal| match refusal.kind {
            crate::sql_policy::RefusalKind::Object => Refusal::unsupported(refusal.message),
            _ => refusal,
        })
    }
}

impl Surface for Expressions<'_, '_> {
    fn settings(&self) -> &'static Settings {
        &shared::CONTINUOUS_QUERY
    }

    fn state(&mut self) -> &mut WalkState {
        &mut self.walk
    }

    fn max_depth(&self) -> usize {
        MAX_WALK_DEPTH
    }

    fn too_deep(&self) -> Refusal {
        LIMITS.too_deep()
    }

    fn refusal(&self, message: String) -> Refusal {
        refusal(message)
    }

    fn column(&mut self, ident: &mut Ident, _reference: bool) -> Result<(), Refusal> {
        *ident = folded(ident);
        self.cx.columns.insert(ident.value.clone());
        Ok(())
    }

    /// In a join, a bare name is qualified with the one table that has the column.
    fn bare_column(&mut self, expr: &mut Expr) -> Result<(), Refusal> {
        if !self.cx.join_mode() {
            return Ok(());
        }
        let Expr::Identifier(ident) = expr else {
            return Err(self.form_refused(expr));
        };
        let table = self.cx.owner_of(&ident.value)?;
        *expr = self.cx.qualify(table, ident.clone());
        Ok(())
    }

    fn qualified_column(&mut self, expr: &mut Expr) -> Result<(), Refusal> {
        let Expr::CompoundIdentifier(parts) = expr else {
            return Err(self.form_refused(expr));
        };
        let (column, qualifier) = parts
            .split_last()
            .ok_or_else(|| refusal("empty column reference"))?;
        let column = folded(column);
        self.cx.columns.insert(column.value.clone());
        if self.cx.join_mode() {
            let table = self.cx.qualified_table(qualifier, parts)?;
            *expr = self.cx.qualify(table, column);
            return Ok(());
        }
        self.cx.tables[0].check_qualifier(qualifier, parts)?;
        *expr = Expr::Identifier(column);
        Ok(())
    }

    fn subquery(&mut self, query: &mut Query) -> Result<(), Refusal> {
        Err(subqueries_refused(&*query))
    }

    fn literal(&mut self, value: &mut ValueWithSpan) -> Result<(), Refusal> {
        reencode_literal(&mut value.value)
    }

    /// Built-in types only: a type of the caller's (a domain with a CHECK function) would
    /// run inside the owner's capture trigger.
    fn cast_type(&mut self, data_type: &mut DataType) -> Result<(), Refusal> {
        shared::check_type(data_type).map_err(|e| refusal(format!("{e} in a continuous query")))
    }

    fn typed_string(&mut self, expr: &mut Expr) -> Result<(), Refusal> {
        reject_moving_literal(expr)?;
        match expr {
            Expr::TypedString(typed) => reencode_literal(&mut typed.value.value),
            other => Err(self.form_refused(other)),
        }
    }

    fn form_refused(&self, expr: &Expr) -> Refusal {
        match expr {
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                subqueries_refused(expr)
            }
            other => refusal(format!(
                "expression {} is not supported in a continuous query",
                text::parse::excerpt(other)
            )),
        }
    }

    fn keyword_refused(&self, keyword: &str) -> Refusal {
        not_deterministic(keyword)
    }

    fn check_call(&mut self, f: &Function) -> Result<(), Refusal> {
        reject_window(f)?;
        if aggregate_kind(&f.name).is_some() {
            return Err(self.place.misplaced_aggregate(f));
        }
        let label = call_label(f);
        match folded_parts(&f.name).as_deref() {
            Some([name]) if UNSUPPORTED_AGGREGATES.contains(&name.as_str()) => {
                Err(refusal(format!(
                    "aggregate {label} is not supported in a continuous query \
                     (supported: {SUPPORTED_AGGREGATES_HINT})"
                )))
            }
            Some([_]) => Ok(()),
            _ => Err(not_deterministic(&label)),
        }
    }

    /// Where a literal's type comes from its context, it may be read as a date or time:
    /// refused there if it means the current one. Plain text such as a LIKE pattern stays
    /// allowed.
    fn context_typed(&mut self, operand: &Expr, context: Context) -> Result<(), Refusal> {
        let typed = match context {
            Context::Operator(op) => is_datetime_operator(op),
            Context::Argument(function) => DATETIME_COERCING_FUNCTIONS.contains(&function),
            Context::Cast | Context::Extract | Context::AtTimeZone | Context::Comparison => true,
        };
        if typed {
            reject_moving_literal(operand)?;
        }
        Ok(())
    }
}
