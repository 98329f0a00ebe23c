//! Function calls, grammar constructs and window specifications.

use super::*;

impl Checker<'_> {
    pub(super) fn function(&mut self, function: &mut Function) -> Result<(), Refusal> {
        match self.resolve_call(function)? {
            Call::Construct(keyword) => self.keyword_construct(keyword, &mut function.args),
            Call::Function { schema, name } => {
                self.call_parts(function)?;
                function.name = catalog_name(schema, &name);
                Ok(())
            }
        }
    }

    /// Decides what a call may be, refusing it if nothing; does not recurse.
    pub(super) fn resolve_call(&mut self, function: &Function) -> Result<Call, Refusal> {
        // Destructured in full so that a new call modifier fails to compile
        // here instead of being silently accepted.
        let Function {
            name,
            uses_odbc_syntax,
            parameters,
            args,
            within_group,
            filter,
            null_treatment,
            over,
        } = function;
        let parts = name_parts(name)?;
        let label = label(&parts);
        if *uses_odbc_syntax
            || !matches!(parameters, FunctionArguments::None)
            || null_treatment.is_some()
        {
            return refuse(format!(
                "the call to {label} uses syntax from another SQL dialect"
            ));
        }
        if let [keyword] = parts.as_slice() {
            if keyword.quote_style.is_none() {
                let keyword = fold(keyword);
                if SESSION_KEYWORDS.contains(&keyword.as_str()) {
                    return refuse(format!(
                        "{keyword} is not allowed: queries cannot read session state"
                    ));
                }
                let construct = CLOCK_KEYWORDS
                    .iter()
                    .chain(KEYWORD_CONSTRUCTS)
                    .find(|k| **k == keyword);
                if let Some(construct) = construct {
                    if !within_group.is_empty() || filter.is_some() || over.is_some() {
                        return refuse(format!(
                            "{keyword} is not an aggregate: WITHIN GROUP, FILTER and OVER do \
                             not apply"
                        ));
                    }
                    return Ok(Call::Construct(construct));
                }
            }
        }
        let (schema, base) = match parts.as_slice() {
            [function] if BEACON_FUNCTIONS.contains(&fold(function).as_str()) => {
                ("beacon", fold(function))
            }
            [function] => ("pg_catalog", fold(function)),
            [schema, function] if fold(schema) == "pg_catalog" => ("pg_catalog", fold(function)),
            [schema, function]
                if fold(schema) == "beacon"
                    && BEACON_FUNCTIONS.contains(&fold(function).as_str()) =>
            {
                ("beacon", fold(function))
            }
            _ => return Err(function_refused(&label)),
        };
        let set_returning = SET_RETURNING_FUNCTIONS.contains(&base.as_str());
        let allowed = schema == "beacon"
            || set_returning
            || AGGREGATE_FUNCTIONS.contains(&base.as_str())
            || WINDOW_FUNCTIONS.contains(&base.as_str())
            || SCALAR_FUNCTIONS.contains(&base.as_str());
        if !allowed {
            return Err(function_refused(&label));
        }
        let FunctionArguments::List(list) = args else {
            return refuse(format!("{label} must be called with an argument list"));
        };
        // age(x) measures from the current date, which is rarely what an
        // analysis means; age(a, b) is pure.
        if base == "age" && list.args.len() != 2 {
            return refuse("age() is only allowed with two arguments");
        }
        if let Some(clause) = list
            .clauses
            .iter()
            .find(|clause| !matches!(clause, FunctionArgumentClause::OrderBy(_)))
        {
            return refuse(format!(
                "{} in a call to {label} is not allowed",
                excerpt(clause)
            ));
        }
        if set_returning && self.query_depth == 1 {
            self.top_level_srf = true;
        }
        Ok(Call::Function { schema, name: base })
    }

    /// Walks the arguments and clauses of a call [`Self::resolve_call`]
    /// allowed.
    pub(super) fn call_parts(&mut self, function: &mut Function) -> Result<(), Refusal> {
        if let FunctionArguments::List(list) = &mut function.args {
            for arg in list.args.iter_mut() {
                self.function_arg(arg)?;
            }
            for clause in list.clauses.iter_mut() {
                if let FunctionArgumentClause::OrderBy(items) = clause {
                    self.order_by_exprs(items)?;
                }
            }
        }
        self.order_by_exprs(&mut function.within_group)?;
        if let Some(filter) = &mut function.filter {
            self.expr(filter)?;
        }
        match &mut function.over {
            Some(WindowType::WindowSpec(spec)) => self.window_spec(spec),
            Some(WindowType::NamedWindow(window)) => check_ident(window),
            None => Ok(()),
        }
    }

    pub(super) fn order_by_exprs(&mut self, items: &mut [OrderByExpr]) -> Result<(), Refusal> {
        for item in items {
            self.order_by_expr(item, false)?;
        }
        Ok(())
    }

    /// Clock keywords and grammar constructs, kept as written.
    pub(super) fn keyword_construct(
        &mut self,
        keyword: &str,
        args: &mut FunctionArguments,
    ) -> Result<(), Refusal> {
        match args {
            FunctionArguments::None if CLOCK_KEYWORDS.contains(&keyword) => Ok(()),
            FunctionArguments::Subquery(query) if keyword == "array" => self.query(query),
            FunctionArguments::List(FunctionArgumentList {
                duplicate_treatment: None,
                args,
                clauses,
            }) if keyword != "array" && clauses.is_empty() => {
                for arg in args {
                    match arg {
                        FunctionArg::Unnamed(FunctionArgExpr::Expr(expr)) => self.expr(expr)?,
                        other => return Err(argument_refused(other)),
                    }
                }
                Ok(())
            }
            _ => Err(construct_refused(keyword)),
        }
    }

    pub(super) fn function_arg(&mut self, arg: &mut FunctionArg) -> Result<(), Refusal> {
        match arg {
            FunctionArg::Unnamed(arg) => self.function_arg_expr(arg),
            // make_interval(days => 1)
            FunctionArg::Named {
                name,
                arg,
                operator: FunctionArgOperator::RightArrow,
            }
            | FunctionArg::ExprNamed {
                name: Expr::Identifier(name),
                arg,
                operator: FunctionArgOperator::RightArrow,
            } => {
                check_ident(name)?;
                self.function_arg_expr(arg)
            }
            other => Err(argument_refused(other)),
        }
    }

    pub(super) fn function_arg_expr(&mut self, arg: &mut FunctionArgExpr) -> Result<(), Refusal> {
        match arg {
            FunctionArgExpr::Expr(expr) => self.expr(expr),
            // count(*)
            FunctionArgExpr::Wildcard => Ok(()),
            // count(t.*): names a FROM item, which is checked on its own.
            FunctionArgExpr::QualifiedWildcard(name) => name_parts(name).map(|_| ()),
            other => Err(argument_refused(other)),
        }
    }

    pub(super) fn window_spec(&mut self, spec: &mut WindowSpec) -> Result<(), Refusal> {
        let WindowSpec {
            window_name,
            partition_by,
            order_by,
            window_frame,
        } = spec;
        if let Some(window) = window_name {
            check_ident(window)?;
        }
        for expr in partition_by {
            self.expr(expr)?;
        }
        for item in order_by {
            self.order_by_expr(item, false)?;
        }
        if let Some(WindowFrame {
            units: _,
            start_bound,
            end_bound,
        }) = window_frame
        {
            for bound in std::iter::once(start_bound).chain(end_bound.as_mut()) {
                match bound {
                    WindowFrameBound::Preceding(Some(offset))
                    | WindowFrameBound::Following(Some(offset)) => self.expr(offset)?,
                    WindowFrameBound::CurrentRow
                    | WindowFrameBound::Preceding(None)
                    | WindowFrameBound::Following(None) => {}
                }
            }
        }
        Ok(())
    }
}

pub(super) fn wildcard_options(options: &WildcardAdditionalOptions) -> Result<(), Refusal> {
    let WildcardAdditionalOptions {
        wildcard_token: _,
        opt_ilike,
        opt_exclude,
        opt_except,
        opt_replace,
        opt_rename,
        opt_alias,
    } = options;
    if opt_ilike.is_some()
        || opt_exclude.is_some()
        || opt_except.is_some()
        || opt_replace.is_some()
        || opt_rename.is_some()
        || opt_alias.is_some()
    {
        return refuse(format!(
            "the wildcard options {} are not allowed",
            excerpt(options)
        ));
    }
    Ok(())
}
