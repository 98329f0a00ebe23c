//! The walk over expressions; chains are walked in a loop.

use super::*;

impl Checker<'_> {
    pub(super) fn expr(&mut self, expr: &mut Expr) -> Result<(), Refusal> {
        self.enter()?;
        let mut next = Some(expr);
        let mut result = Ok(());
        while let Some(expr) = next {
            match self.expr_step(expr) {
                Ok(step) => next = step,
                Err(refusal) => {
                    result = Err(refusal);
                    break;
                }
            }
        }
        self.depth -= 1;
        result
    }

    /// Checks one node and everything under it except its first operand,
    /// which it returns for [`Self::expr`] to continue with in a loop: left-
    /// deep chains (`a + b + c ...`, `x LIKE y LIKE z ...`, `v::a::b ...`)
    /// then cost no recursion, however long they are. What remains recursive
    /// is nesting sqlparser's recursion limit bounds.
    ///
    /// Kept to calls of small functions: in debug builds each temporary of a
    /// big function gets a stack slot of its own, so refusal messages and
    /// rewritten nodes are built in functions off the recursive path.
    pub(super) fn expr_step<'e>(
        &mut self,
        expr: &'e mut Expr,
    ) -> Result<Option<&'e mut Expr>, Refusal> {
        if matches!(
            expr,
            Expr::Ceil { .. } | Expr::Floor { .. } | Expr::Substring { special: true, .. }
        ) {
            // Printed as CEIL(x) / FLOOR(x), which PostgreSQL looks up on
            // search_path, or as an ordinary call (SUBSTR(x, a, b)): made a
            // pg_catalog call, then checked as one.
            rewrite_call_syntax(expr)?;
            return Ok(Some(expr));
        }
        let first = match expr {
            Expr::Identifier(ident) => {
                self.identifier(ident, true)?;
                return Ok(None);
            }
            Expr::CompoundIdentifier(parts) => {
                self.compound_identifier(parts)?;
                return Ok(None);
            }
            Expr::CompoundFieldAccess { root, access_chain } => {
                self.access_chain(access_chain)?;
                root
            }
            Expr::Nested(inner)
            | Expr::IsNull(inner)
            | Expr::IsNotNull(inner)
            | Expr::IsTrue(inner)
            | Expr::IsNotTrue(inner)
            | Expr::IsFalse(inner)
            | Expr::IsNotFalse(inner)
            | Expr::IsUnknown(inner)
            | Expr::IsNotUnknown(inner) => inner,
            Expr::IsDistinctFrom(left, right)
            | Expr::IsNotDistinctFrom(left, right)
            | Expr::AtTimeZone {
                timestamp: left,
                time_zone: right,
            }
            | Expr::Position {
                expr: left,
                r#in: right,
            } => {
                self.expr(right)?;
                left
            }
            Expr::BinaryOp { left, op, right } => {
                self.binary(op, right)?;
                left
            }
            Expr::AnyOp {
                left,
                compare_op,
                right,
                is_some: _,
            }
            | Expr::AllOp {
                left,
                compare_op,
                right,
            } => {
                self.any_all(compare_op, right)?;
                left
            }
            Expr::UnaryOp { op, expr: operand } => {
                self.unary(*op, operand)?;
                operand
            }
            Expr::InList {
                expr: inner,
                list,
                negated: _,
            } => {
                self.exprs(list)?;
                inner
            }
            Expr::InSubquery {
                expr: inner,
                subquery,
                negated: _,
            } => {
                self.query(subquery)?;
                inner
            }
            Expr::Between {
                expr: inner,
                negated: _,
                low,
                high,
            } => {
                self.pair(low, high)?;
                inner
            }
            Expr::Like {
                negated: _,
                any: false,
                expr: inner,
                pattern,
                escape_char,
            }
            | Expr::ILike {
                negated: _,
                any: false,
                expr: inner,
                pattern,
                escape_char,
            }
            | Expr::SimilarTo {
                negated: _,
                expr: inner,
                pattern,
                escape_char,
            } => {
                self.like(pattern, escape_char)?;
                inner
            }
            Expr::Cast {
                kind: CastKind::Cast | CastKind::DoubleColon,
                expr: inner,
                data_type,
                format: None,
            } => {
                check_type(data_type)?;
                inner
            }
            Expr::Extract {
                field,
                syntax: ExtractSyntax::From,
                expr: inner,
            } => {
                check_datetime_field(field)?;
                inner
            }
            Expr::Substring {
                expr: inner,
                substring_from,
                substring_for,
                special: false,
                shorthand,
            } => {
                // SUBSTRING(x FROM a FOR b) is grammar, which always means
                // pg_catalog.substring; SUBSTR(x FROM ...) would not be.
                *shorthand = false;
                self.opt_pair(substring_from, substring_for)?;
                inner
            }
            Expr::Trim {
                trim_where: _,
                trim_what,
                expr: inner,
                trim_characters,
            } => {
                self.trim(trim_what, trim_characters)?;
                inner
            }
            Expr::Overlay {
                expr: inner,
                overlay_what,
                overlay_from,
                overlay_for,
            } => {
                self.overlay(overlay_what, overlay_from, overlay_for)?;
                inner
            }
            Expr::Interval(interval) => {
                check_interval(interval)?;
                &mut interval.value
            }
            Expr::Value(value) => {
                literal(value)?;
                return Ok(None);
            }
            Expr::TypedString(TypedString {
                data_type,
                value,
                uses_odbc_syntax: false,
            }) => {
                typed_string(data_type, value)?;
                return Ok(None);
            }
            Expr::Function(function) => {
                self.function(function)?;
                return Ok(None);
            }
            Expr::Case {
                case_token: _,
                end_token: _,
                operand,
                conditions,
                else_result,
            } => {
                self.case(operand, conditions, else_result)?;
                return Ok(None);
            }
            Expr::Exists {
                subquery,
                negated: _,
            }
            | Expr::Subquery(subquery) => {
                self.query(subquery)?;
                return Ok(None);
            }
            Expr::GroupingSets(sets) | Expr::Cube(sets) | Expr::Rollup(sets) => {
                self.expr_sets(sets)?;
                return Ok(None);
            }
            Expr::Tuple(items)
            | Expr::Array(Array {
                elem: items,
                named: true,
            }) => {
                self.exprs(items)?;
                return Ok(None);
            }
            other => return Err(expression_refused(other)),
        };
        Ok(Some(first))
    }

    pub(super) fn pair(&mut self, left: &mut Expr, right: &mut Expr) -> Result<(), Refusal> {
        self.expr(left)?;
        self.expr(right)
    }

    pub(super) fn opt_expr(&mut self, expr: &mut Option<Box<Expr>>) -> Result<(), Refusal> {
        match expr {
            Some(expr) => self.expr(expr),
            None => Ok(()),
        }
    }

    pub(super) fn opt_pair(
        &mut self,
        first: &mut Option<Box<Expr>>,
        second: &mut Option<Box<Expr>>,
    ) -> Result<(), Refusal> {
        self.opt_expr(first)?;
        self.opt_expr(second)
    }

    pub(super) fn exprs(&mut self, exprs: &mut [Expr]) -> Result<(), Refusal> {
        for expr in exprs {
            self.expr(expr)?;
        }
        Ok(())
    }

    pub(super) fn expr_sets(&mut self, sets: &mut [Vec<Expr>]) -> Result<(), Refusal> {
        for set in sets {
            self.exprs(set)?;
        }
        Ok(())
    }

    pub(super) fn binary(&mut self, op: &BinaryOperator, right: &mut Expr) -> Result<(), Refusal> {
        check_binary_operator(op)?;
        self.expr(right)
    }

    pub(super) fn any_all(&mut self, op: &BinaryOperator, right: &mut Expr) -> Result<(), Refusal> {
        check_comparison(op)?;
        self.expr(right)
    }

    pub(super) fn like(
        &mut self,
        pattern: &mut Expr,
        escape: &mut Option<Box<Expr>>,
    ) -> Result<(), Refusal> {
        self.expr(pattern)?;
        self.opt_expr(escape)
    }

    pub(super) fn trim(
        &mut self,
        what: &mut Option<Box<Expr>>,
        characters: &mut Option<Vec<Expr>>,
    ) -> Result<(), Refusal> {
        self.opt_expr(what)?;
        match characters {
            Some(characters) => self.exprs(characters),
            None => Ok(()),
        }
    }

    pub(super) fn overlay(
        &mut self,
        what: &mut Expr,
        from: &mut Expr,
        length: &mut Option<Box<Expr>>,
    ) -> Result<(), Refusal> {
        self.pair(what, from)?;
        self.opt_expr(length)
    }

    pub(super) fn case(
        &mut self,
        operand: &mut Option<Box<Expr>>,
        conditions: &mut [CaseWhen],
        else_result: &mut Option<Box<Expr>>,
    ) -> Result<(), Refusal> {
        self.opt_expr(operand)?;
        for CaseWhen { condition, result } in conditions {
            self.pair(condition, result)?;
        }
        self.opt_expr(else_result)
    }

    pub(super) fn compound_identifier(&mut self, parts: &[Ident]) -> Result<(), Refusal> {
        for part in parts {
            check_ident(part)?;
        }
        if let Some(last) = parts.last() {
            self.columns.insert(fold(last));
        }
        Ok(())
    }

    pub(super) fn access_chain(&mut self, chain: &mut [AccessExpr]) -> Result<(), Refusal> {
        for access in chain {
            match access {
                AccessExpr::Dot(Expr::Identifier(field)) => check_ident(field)?,
                AccessExpr::Subscript(Subscript::Index { index }) => self.expr(index)?,
                AccessExpr::Subscript(Subscript::Slice {
                    lower_bound,
                    upper_bound,
                    stride: None,
                }) => {
                    for bound in [lower_bound, upper_bound].into_iter().flatten() {
                        self.expr(bound)?;
                    }
                }
                other => return Err(field_access_refused(other)),
            }
        }
        Ok(())
    }

    /// Checks the operator; the caller continues with the operand.
    pub(super) fn unary(
        &mut self,
        op: UnaryOperator,
        operand: &mut Box<Expr>,
    ) -> Result<(), Refusal> {
        match op {
            UnaryOperator::Plus
            | UnaryOperator::Minus
            | UnaryOperator::Not
            | UnaryOperator::BitwiseNot
            | UnaryOperator::PGAbs
            | UnaryOperator::PGSquareRoot
            | UnaryOperator::PGCubeRoot => {}
            other => return Err(operator_refused(&other)),
        }
        // Parenthesized only where needed: elsewhere the parentheses could
        // change the meaning, since sqlparser binds `-x ^ 2` as `-(x ^ 2)`
        // and PostgreSQL, reading the printed text, as `(-x) ^ 2`.
        if op != UnaryOperator::Not && starts_with_operator(operand) {
            parenthesize(operand);
        }
        Ok(())
    }
}
