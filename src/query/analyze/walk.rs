//! The default-deny walk over a query: statements, clauses and FROM items.

use super::*;
use crate::sql_policy::text::walk::{Surface, WalkState};
use shared::wildcard_options;

mod surface;

/// Walks a query, refusing what is not allowed and rewriting names in place.
pub(super) struct Checker<'a> {
    /// `None` when inspecting an already checked (and rewritten) query, whose
    /// table references are taken as they are.
    pub(super) project: Option<&'a str>,
    /// Names of the CTEs in scope, innermost last.
    pub(super) ctes: Vec<String>,
    pub(super) walk: WalkState,
    /// 1 inside the outermost query, more inside subqueries and CTEs.
    pub(super) query_depth: usize,
    /// A set-returning function is called in an expression of the outermost
    /// query, so it may return several rows per group.
    pub(super) top_level_srf: bool,
    /// Every name used as a column reference (folded), except bare names in
    /// GROUP BY and ORDER BY, which may be output names instead.
    pub(super) columns: BTreeSet<String>,
}

impl<'a> Checker<'a> {
    pub(super) fn new(project: Option<&'a str>) -> Self {
        Checker {
            project,
            ctes: Vec::new(),
            walk: WalkState::default(),
            query_depth: 0,
            top_level_srf: false,
            columns: BTreeSet::new(),
        }
    }

    pub(super) fn enter(&mut self) -> Result<(), Refusal> {
        self.walk.depth += 1;
        if self.walk.depth > MAX_WALK_DEPTH {
            return Err(too_deep());
        }
        Ok(())
    }

    pub(super) fn expr(&mut self, expr: &mut Expr) -> Result<(), Refusal> {
        shared::expr(self, expr)
    }

    pub(super) fn exprs(&mut self, exprs: &mut [Expr]) -> Result<(), Refusal> {
        shared::exprs(self, exprs)
    }

    pub(super) fn query(&mut self, query: &mut Query) -> Result<(), Refusal> {
        self.enter()?;
        self.query_depth += 1;
        let scope = self.ctes.len();
        let result = self.query_inner(query);
        self.ctes.truncate(scope);
        self.query_depth -= 1;
        self.walk.depth -= 1;
        result
    }

    pub(super) fn query_inner(&mut self, query: &mut Query) -> Result<(), Refusal> {
        // Destructured in full so that a clause added by a future sqlparser
        // fails to compile here instead of being silently allowed.
        let Query {
            with,
            body,
            order_by,
            limit_clause,
            fetch,
            locks,
            for_clause,
            settings,
            format_clause,
            pipe_operators,
        } = query;
        if !locks.is_empty() {
            return refuse("FOR UPDATE / FOR SHARE (row locking clauses) are not allowed");
        }
        if for_clause.is_some()
            || settings.is_some()
            || format_clause.is_some()
            || !pipe_operators.is_empty()
        {
            return refuse(
                "the query uses syntax from another SQL dialect (FOR / SETTINGS / FORMAT / |>)",
            );
        }
        if let Some(with) = with {
            self.with(with)?;
        }
        self.set_expr(body)?;
        if let Some(OrderBy { kind, interpolate }) = order_by {
            if interpolate.is_some() {
                return refuse("INTERPOLATE is not allowed");
            }
            match kind {
                OrderByKind::Expressions(items) => {
                    for item in items {
                        shared::order_by_expr(self, item, true)?;
                    }
                }
                OrderByKind::All(_) => return refuse("ORDER BY ALL is not allowed"),
            }
        }
        match limit_clause {
            Some(LimitClause::LimitOffset {
                limit,
                offset,
                limit_by,
            }) => {
                if !limit_by.is_empty() {
                    return refuse("LIMIT BY is not allowed");
                }
                if let Some(limit) = limit {
                    self.expr(limit)?;
                }
                if let Some(Offset { value, rows: _ }) = offset {
                    self.expr(value)?;
                }
            }
            Some(LimitClause::OffsetCommaLimit { .. }) => {
                return refuse(
                    "LIMIT offset, count is not allowed; write LIMIT count OFFSET offset",
                );
            }
            None => {}
        }
        if let Some(Fetch {
            with_ties: _,
            percent: _,
            quantity: Some(quantity),
        }) = fetch
        {
            self.expr(quantity)?;
        }
        Ok(())
    }

    pub(super) fn with(&mut self, with: &mut With) -> Result<(), Refusal> {
        let With {
            with_token: _,
            recursive,
            cte_tables,
        } = with;
        // A recursive CTE sees itself and its siblings; otherwise each CTE
        // sees only the ones before it, and its own name means the table.
        if *recursive {
            for cte in cte_tables.iter() {
                check_ident(&cte.alias.name)?;
                self.ctes.push(fold(&cte.alias.name));
            }
        }
        for cte in cte_tables.iter_mut() {
            let Cte {
                alias,
                query,
                from,
                materialized: _,
                closing_paren_token: _,
            } = cte;
            if from.is_some() {
                return refuse("CTE ... FROM is not allowed");
            }
            self.table_alias(alias, false)?;
            self.query(query)?;
            if !*recursive {
                self.ctes.push(fold(&alias.name));
            }
        }
        Ok(())
    }

    pub(super) fn set_expr(&mut self, set_expr: &mut SetExpr) -> Result<(), Refusal> {
        self.enter()?;
        let result = self.set_expr_inner(set_expr);
        self.walk.depth -= 1;
        result
    }

    pub(super) fn set_expr_inner(&mut self, set_expr: &mut SetExpr) -> Result<(), Refusal> {
        match set_expr {
            SetExpr::Select(select) => self.select(select),
            SetExpr::Query(query) => self.query(query),
            SetExpr::SetOperation { .. } => self.set_operation_chain(set_expr),
            SetExpr::Values(Values {
                explicit_row,
                value_keyword: _,
                rows,
            }) => {
                if *explicit_row {
                    return refuse("VALUES ROW(...) is not allowed");
                }
                for row in rows {
                    for value in row.content.iter_mut() {
                        self.expr(value)?;
                    }
                }
                Ok(())
            }
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) => {
                Err(modification_refused(set_expr))
            }
            SetExpr::Table(_) => refuse("the TABLE x form is not allowed; write SELECT * FROM x"),
        }
    }

    /// Walked along the left spine in a loop, like operator chains: `SELECT
    /// 1 UNION SELECT 2 UNION ...` nests one level per UNION.
    pub(super) fn set_operation_chain(
        &mut self,
        mut set_expr: &mut SetExpr,
    ) -> Result<(), Refusal> {
        while let SetExpr::SetOperation {
            left,
            op,
            set_quantifier,
            right,
        } = set_expr
        {
            check_set_operation(op, set_quantifier)?;
            self.set_expr(right)?;
            set_expr = left;
        }
        self.set_expr(set_expr)
    }

    pub(super) fn select(&mut self, select: &mut Select) -> Result<(), Refusal> {
        // Destructured in full for the same reason as the query above.
        if text::walk::foreign_select_clauses(select) {
            return refuse("the SELECT uses syntax from another SQL dialect");
        }
        // the rest is walked here, every clause of it (see foreign_select_clauses)
        let Select {
            distinct,
            top,
            projection,
            into,
            from,
            lateral_views,
            selection,
            group_by,
            having,
            named_window,
            qualify,
            ..
        } = select;
        if into.is_some() {
            return refuse("SELECT ... INTO is not allowed: queries cannot create tables");
        }
        if top.is_some() || !lateral_views.is_empty() || qualify.is_some() {
            return refuse("the SELECT uses syntax from another SQL dialect");
        }
        for table in from.iter_mut() {
            self.table_with_joins(table)?;
        }
        match distinct {
            Some(Distinct::On(exprs)) => self.exprs(exprs)?,
            Some(Distinct::All | Distinct::Distinct) | None => {}
        }
        for item in projection.iter_mut() {
            self.select_item(item)?;
        }
        if let Some(selection) = selection {
            self.expr(selection)?;
        }
        match group_by {
            GroupByExpr::Expressions(exprs, modifiers) if modifiers.is_empty() => {
                for expr in exprs {
                    self.expr_or_output_name(expr)?;
                }
            }
            GroupByExpr::Expressions(..) => {
                return refuse(
                    "GROUP BY ... WITH ROLLUP / CUBE / TOTALS is not allowed; use ROLLUP(...)",
                );
            }
            GroupByExpr::All(_) => return refuse("GROUP BY ALL is not allowed"),
        }
        if let Some(having) = having {
            self.expr(having)?;
        }
        for NamedWindowDefinition(name, definition) in named_window {
            check_ident(name)?;
            match definition {
                NamedWindowExpr::NamedWindow(other) => check_ident(other)?,
                NamedWindowExpr::WindowSpec(spec) => shared::window_spec(self, spec)?,
            }
        }
        Ok(())
    }

    pub(super) fn select_item(&mut self, item: &mut SelectItem) -> Result<(), Refusal> {
        match item {
            SelectItem::UnnamedExpr(expr) => self.expr(expr),
            SelectItem::ExprWithAlias { expr, alias } => {
                check_ident(alias)?;
                self.expr(expr)
            }
            SelectItem::Wildcard(options) => wildcard_options(options),
            SelectItem::QualifiedWildcard(kind, options) => {
                match kind {
                    // Names a FROM item, which is already checked.
                    SelectItemQualifiedWildcardKind::ObjectName(name) => {
                        name_parts(name)?;
                    }
                    SelectItemQualifiedWildcardKind::Expr(expr) => self.expr(expr)?,
                }
                wildcard_options(options)
            }
            other => refuse(format!("the select item {} is not allowed", excerpt(other))),
        }
    }

    pub(super) fn table_with_joins(&mut self, table: &mut TableWithJoins) -> Result<(), Refusal> {
        let TableWithJoins { relation, joins } = table;
        self.table_factor(relation)?;
        for join in joins {
            let Join {
                relation,
                global,
                join_operator,
            } = join;
            if *global {
                return refuse("GLOBAL JOIN is not allowed");
            }
            self.table_factor(relation)?;
            match join_operator {
                JoinOperator::Join(constraint)
                | JoinOperator::Inner(constraint)
                | JoinOperator::Left(constraint)
                | JoinOperator::LeftOuter(constraint)
                | JoinOperator::Right(constraint)
                | JoinOperator::RightOuter(constraint)
                | JoinOperator::FullOuter(constraint)
                | JoinOperator::CrossJoin(constraint) => match constraint {
                    JoinConstraint::On(expr) => self.expr(expr)?,
                    JoinConstraint::Using(columns) => {
                        for column in columns {
                            if name_parts(column)?.len() != 1 {
                                return refuse(format!(
                                    "USING ({column}) must name columns, not qualified names"
                                ));
                            }
                        }
                    }
                    JoinConstraint::Natural | JoinConstraint::None => {}
                },
                other => {
                    return refuse(format!(
                        "this kind of join is not allowed ({})",
                        excerpt(&format!("{other:?}"))
                    ));
                }
            }
        }
        Ok(())
    }

    pub(super) fn table_factor(&mut self, factor: &mut TableFactor) -> Result<(), Refusal> {
        self.enter()?;
        let result = self.table_factor_inner(factor);
        self.walk.depth -= 1;
        result
    }

    pub(super) fn table_factor_inner(&mut self, factor: &mut TableFactor) -> Result<(), Refusal> {
        match factor {
            // Destructured in full so that a new table modifier fails to
            // compile here instead of being silently accepted.
            TableFactor::Table {
                name,
                alias,
                args,
                with_hints,
                version,
                with_ordinality,
                partitions,
                json_path,
                sample,
                index_hints,
            } => {
                if sample.is_some() {
                    return refuse("TABLESAMPLE is not allowed");
                }
                if !with_hints.is_empty()
                    || version.is_some()
                    || !partitions.is_empty()
                    || json_path.is_some()
                    || !index_hints.is_empty()
                {
                    return Err(from_item_refused(factor));
                }
                match args {
                    Some(TableFunctionArgs {
                        args,
                        settings: None,
                    }) => self.table_function(name, args, alias),
                    Some(_) => refuse("SETTINGS is not allowed"),
                    None if *with_ordinality => refuse("WITH ORDINALITY needs a function"),
                    None => {
                        self.relation(name)?;
                        self.table_alias_opt(alias, false)
                    }
                }
            }
            TableFactor::Derived {
                lateral: _,
                subquery,
                alias,
                sample,
            } => {
                if sample.is_some() {
                    return refuse("TABLESAMPLE is not allowed");
                }
                self.query(subquery)?;
                self.table_alias_opt(alias, false)
            }
            TableFactor::Function {
                lateral: _,
                name,
                args,
                with_ordinality: _,
                alias,
            } => self.table_function(name, args, alias),
            TableFactor::UNNEST {
                alias,
                array_exprs,
                with_offset: false,
                with_offset_alias: None,
                with_ordinality: _,
            } => {
                self.exprs(array_exprs)?;
                self.table_alias_opt(alias, false)?;
                unnest_as_function(factor);
                Ok(())
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias,
            } => {
                self.table_with_joins(table_with_joins)?;
                self.table_alias_opt(alias, false)
            }
            other => Err(from_item_refused(other)),
        }
    }

    /// A table function in FROM: only set-returning built-ins.
    pub(super) fn table_function(
        &mut self,
        name: &mut ObjectName,
        args: &mut [FunctionArg],
        alias: &mut Option<TableAlias>,
    ) -> Result<(), Refusal> {
        let parts = name_parts(name)?;
        let label = label(&parts);
        let function = match parts.as_slice() {
            [function] => fold(function),
            [schema, function] if fold(schema) == "pg_catalog" => fold(function),
            _ => String::new(),
        };
        let record = RECORD_FUNCTIONS.contains(&function.as_str());
        if !record && !SET_RETURNING_FUNCTIONS.contains(&function.as_str()) {
            return refuse(format!(
                "the table function {label}() is not allowed in FROM (allowed: {})",
                SET_RETURNING_FUNCTIONS.join(", ")
            ));
        }
        for arg in args.iter_mut() {
            shared::function_arg(self, arg)?;
        }
        self.table_alias_opt(alias, record)?;
        *name = catalog_name("pg_catalog", &function);
        Ok(())
    }

    /// A table reference: the project's own table, or a CTE in scope.
    pub(super) fn relation(&mut self, name: &mut ObjectName) -> Result<(), Refusal> {
        let parts = name_parts(name)?;
        let label = label(&parts);
        let table = match parts.as_slice() {
            // sqlparser reads `FROM ONLY t` as table `only` aliased `t`.
            [only] if only.quote_style.is_none() && only.value.eq_ignore_ascii_case("only") => {
                return refuse("FROM ONLY is not allowed");
            }
            [table] => {
                let table = fold(table);
                if self.ctes.contains(&table) {
                    return Ok(());
                }
                table
            }
            [schema, table] if Some(fold(schema).as_str()) == self.project => fold(table),
            _ => {
                let Some(project) = self.project else {
                    // Inspecting an already checked query.
                    return Ok(());
                };
                return refuse(format!(
                    "the table {label} is not allowed: queries can only read the tables of \
                     project {project} (write the table name without a schema)"
                ));
            }
        };
        if let Some(project) = self.project {
            *name = ObjectName::from(vec![quoted(project), quoted(&table)]);
        }
        Ok(())
    }

    pub(super) fn table_alias_opt(
        &mut self,
        alias: &Option<TableAlias>,
        typed_columns: bool,
    ) -> Result<(), Refusal> {
        match alias {
            Some(alias) => self.table_alias(alias, typed_columns),
            None => Ok(()),
        }
    }

    pub(super) fn table_alias(
        &mut self,
        alias: &TableAlias,
        typed_columns: bool,
    ) -> Result<(), Refusal> {
        let TableAlias {
            explicit: _,
            name,
            columns,
            at,
        } = alias;
        if at.is_some() {
            return refuse("AT in a table alias is not allowed");
        }
        check_ident(name)?;
        for column in columns {
            check_ident(&column.name)?;
            if let Some(data_type) = &column.data_type {
                if !typed_columns {
                    return refuse(format!(
                        "column types in the alias {} are only allowed for {}",
                        excerpt(alias),
                        RECORD_FUNCTIONS.join(", ")
                    ));
                }
                check_type(data_type)?;
            }
        }
        Ok(())
    }

    /// A bare name in GROUP BY may be an output column name rather than a column
    /// reference.
    pub(super) fn expr_or_output_name(&mut self, expr: &mut Expr) -> Result<(), Refusal> {
        match expr {
            Expr::Identifier(ident) => shared::identifier(self, ident, false),
            other => self.expr(other),
        }
    }
}
