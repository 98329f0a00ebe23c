//! What the shared expression walker asks `beacon.query` about.

use super::*;
use crate::sql_policy::text::walk::{query_literal, Settings, QUERY};
use sqlparser::ast::{DataType, Ident, TypedString, ValueWithSpan};

impl Surface for Checker<'_> {
    fn settings(&self) -> &'static Settings {
        &QUERY
    }

    fn state(&mut self) -> &mut WalkState {
        &mut self.walk
    }

    fn max_depth(&self) -> usize {
        MAX_WALK_DEPTH
    }

    fn too_deep(&self) -> Refusal {
        too_deep()
    }

    fn column(&mut self, ident: &mut Ident, reference: bool) -> Result<(), Refusal> {
        check_ident(ident)?;
        if reference {
            self.columns.insert(fold(ident));
        }
        Ok(())
    }

    fn qualified_column(&mut self, expr: &mut Expr) -> Result<(), Refusal> {
        let Expr::CompoundIdentifier(parts) = expr else {
            return Err(self.form_refused(expr));
        };
        for part in parts.iter() {
            check_ident(part)?;
        }
        if let Some(last) = parts.last() {
            self.columns.insert(fold(last));
        }
        Ok(())
    }

    fn subquery(&mut self, query: &mut Query) -> Result<(), Refusal> {
        self.query(query)
    }

    fn literal(&mut self, value: &mut ValueWithSpan) -> Result<(), Refusal> {
        query_literal(value)
    }

    fn cast_type(&mut self, data_type: &mut DataType) -> Result<(), Refusal> {
        check_type(data_type)
    }

    fn typed_string(&mut self, expr: &mut Expr) -> Result<(), Refusal> {
        match expr {
            Expr::TypedString(TypedString {
                data_type,
                value,
                uses_odbc_syntax: false,
            }) => {
                check_type(data_type)?;
                query_literal(value)
            }
            other => Err(self.form_refused(other)),
        }
    }

    fn keyword_refused(&self, keyword: &str) -> Refusal {
        refusal(format!(
            "{keyword} is not allowed: queries cannot read session state"
        ))
    }

    fn set_returning_call(&mut self) {
        if self.query_depth == 1 {
            self.top_level_srf = true;
        }
    }
}
