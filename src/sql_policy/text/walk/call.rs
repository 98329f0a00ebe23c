//! Function calls, grammar constructs and window specifications.

use super::expr::identifier;
use super::*;
use crate::sql_policy::text::parse::excerpt;
use crate::sqlident::fold;
use sqlparser::ast::{Function, ObjectName};
use sqlparser::ast::{
    FunctionArg, FunctionArgExpr, FunctionArgOperator, FunctionArgumentClause,
    FunctionArgumentList, FunctionArguments, OrderByExpr, WildcardAdditionalOptions, WindowFrame,
    WindowFrameBound, WindowSpec, WindowType,
};

/// What a call turned out to be.
enum Call {
    /// A grammar construct or clock keyword, printed as written.
    Construct(&'static str),
    /// A function of `schema`.
    Function { schema: &'static str, name: String },
}

/// `expr` is an `Expr::Function`.
pub(super) fn function<S: Surface + ?Sized>(s: &mut S, expr: &mut Expr) -> Result<(), Refusal> {
    let Expr::Function(function) = expr else {
        return Err(s.form_refused(expr));
    };
    if !s.settings().subqueries {
        if let FunctionArguments::Subquery(query) = &mut function.args {
            return s.subquery(query);
        }
    }
    s.check_call(function)?;
    match resolve(s, function)? {
        Call::Construct(keyword) => {
            construct(s, keyword, &mut function.args)?;
            if s.settings().constructs_any_spelling {
                function.name = ObjectName::from(vec![Ident::new(keyword.to_uppercase())]);
            } else if s.settings().function_names == FunctionNames::Unqualified {
                function.name = ObjectName::from(vec![Ident::new(keyword)]);
            }
            Ok(())
        }
        Call::Function { schema, name } => {
            parts(s, function, &name)?;
            function.name = match s.settings().function_names {
                FunctionNames::Quoted => catalog_name(schema, &name),
                FunctionNames::Qualified => {
                    ObjectName::from(vec![Ident::new(schema), Ident::new(name)])
                }
                FunctionNames::Unqualified => ObjectName::from(vec![Ident::new(name)]),
            };
            Ok(())
        }
    }
}

#[cold]
fn function_refused<S: Surface + ?Sized>(s: &S, label: &str) -> Refusal {
    s.refusal(format!(
        "the function {label}() is not allowed{}{}",
        s.settings().suffix,
        (s.settings().function_hint)()
    ))
}

#[cold]
fn not_an_aggregate<S: Surface + ?Sized>(s: &S, keyword: &str) -> Refusal {
    s.refusal(format!(
        "{keyword} is not an aggregate: WITHIN GROUP, FILTER and OVER do not apply"
    ))
}

/// Refuses what a plain call may not have, and a wrong number of arguments.
fn plain_call<S: Surface + ?Sized>(
    s: &S,
    function: &Function,
    base: &str,
    label: &str,
) -> Result<(), Refusal> {
    let settings = s.settings();
    let FunctionArguments::List(list) = &function.args else {
        return Err(s.refusal(format!("{label}() must be called with an argument list")));
    };
    if settings.plain_calls
        && (list.duplicate_treatment.is_some()
            || !list.clauses.is_empty()
            || function.filter.is_some()
            || function.over.is_some()
            || !function.within_group.is_empty())
    {
        return Err(s.refusal(format!(
            "{label}() is not an aggregate{}: it must be a plain call, without DISTINCT, \
             ORDER BY, FILTER, WITHIN GROUP or OVER",
            settings.suffix
        )));
    }
    if let Some(&(_, min, max)) = settings.arity.iter().find(|(name, ..)| *name == base) {
        let count = list.args.len();
        if count < min || max.is_some_and(|max| count > max) {
            let expected = match max {
                Some(max) if max == min => format!("{min}"),
                Some(max) => format!("{min} to {max}"),
                None => format!("at least {min}"),
            };
            return Err(s.refusal(format!(
                "{label}() takes {expected} argument(s), not {count}"
            )));
        }
    }
    Ok(())
}

/// Decides what a call may be, refusing it if nothing; does not recurse.
fn resolve<S: Surface + ?Sized>(s: &mut S, function: &Function) -> Result<Call, Refusal> {
    // Destructured in full so that a new call modifier fails to compile here instead of
    // being silently accepted.
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
    let settings = s.settings();
    let parts = name_parts(name)?;
    let label = label(&parts);
    if *uses_odbc_syntax
        || !matches!(parameters, FunctionArguments::None)
        || null_treatment.is_some()
    {
        return Err(s.refusal(format!(
            "the call to {label} uses syntax from another SQL dialect"
        )));
    }
    if let [keyword] = parts.as_slice() {
        if keyword.quote_style.is_none() {
            let keyword = fold(keyword);
            if SESSION_KEYWORDS.contains(&keyword.as_str()) {
                return Err(s.keyword_refused(&keyword));
            }
            if let Some(clock) = CLOCK_KEYWORDS.iter().find(|k| **k == keyword) {
                if !settings.clock {
                    return Err(s.keyword_refused(&keyword));
                }
                if !within_group.is_empty() || filter.is_some() || over.is_some() {
                    return Err(not_an_aggregate(s, clock));
                }
                return Ok(Call::Construct(clock));
            }
        }
    }
    let construct = match parts.as_slice() {
        [keyword] if keyword.quote_style.is_none() || settings.constructs_any_spelling => {
            Some(fold(keyword))
        }
        [schema, keyword] if settings.constructs_any_spelling && fold(schema) == "pg_catalog" => {
            Some(fold(keyword))
        }
        _ => None,
    }
    .and_then(|keyword| settings.constructs.iter().find(|k| **k == keyword));
    if let Some(construct) = construct {
        if settings.plain_calls {
            plain_call(s, function, construct, &label)?;
        } else if !within_group.is_empty() || filter.is_some() || over.is_some() {
            return Err(not_an_aggregate(s, construct));
        }
        return Ok(Call::Construct(construct));
    }
    let beacon = |function: &Ident| settings.beacon_functions.contains(&fold(function).as_str());
    let (schema, base) = match parts.as_slice() {
        [function] if beacon(function) => ("beacon", fold(function)),
        [function] => ("pg_catalog", fold(function)),
        [schema, function] if fold(schema) == "pg_catalog" => ("pg_catalog", fold(function)),
        [schema, function] if fold(schema) == "beacon" && beacon(function) => {
            ("beacon", fold(function))
        }
        _ => return Err(function_refused(s, &label)),
    };
    let set_returning = settings.set_returning.contains(&base.as_str());
    let allowed = schema == "beacon" || set_returning || settings.function_allowed(&base);
    if !allowed {
        return Err(function_refused(s, &label));
    }
    plain_call(s, function, &base, &label)?;
    let FunctionArguments::List(list) = args else {
        unreachable!("plain_call refuses calls without an argument list");
    };
    if let Some(clause) = list
        .clauses
        .iter()
        .find(|clause| !matches!(clause, FunctionArgumentClause::OrderBy(_)))
    {
        return Err(s.refusal(format!(
            "{} in a call to {label} is not allowed",
            excerpt(clause)
        )));
    }
    if set_returning {
        s.set_returning_call();
    }
    Ok(Call::Function { schema, name: base })
}

/// Walks the arguments and clauses of a call [`resolve`] allowed.
fn parts<S: Surface + ?Sized>(
    s: &mut S,
    function: &mut Function,
    base: &str,
) -> Result<(), Refusal> {
    let label = function.name.to_string();
    if let FunctionArguments::List(list) = &mut function.args {
        for arg in list.args.iter_mut() {
            if let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg {
                s.context_typed(e, Context::Argument(base))?;
            }
            call_arg(s, arg, &label)?;
        }
        for clause in list.clauses.iter_mut() {
            if let FunctionArgumentClause::OrderBy(items) = clause {
                order_by_exprs(s, items)?;
            }
        }
    }
    order_by_exprs(s, &mut function.within_group)?;
    if let Some(filter) = &mut function.filter {
        expr(s, filter)?;
    }
    match &mut function.over {
        Some(WindowType::WindowSpec(spec)) => window_spec(s, spec),
        Some(WindowType::NamedWindow(window)) => check_ident(window),
        None => Ok(()),
    }
}

fn order_by_exprs<S: Surface + ?Sized>(
    s: &mut S,
    items: &mut [OrderByExpr],
) -> Result<(), Refusal> {
    for item in items {
        order_by_expr(s, item, false)?;
    }
    Ok(())
}

/// Clock keywords and grammar constructs, kept as written.
fn construct<S: Surface + ?Sized>(
    s: &mut S,
    keyword: &str,
    args: &mut FunctionArguments,
) -> Result<(), Refusal> {
    match args {
        FunctionArguments::None if CLOCK_KEYWORDS.contains(&keyword) => Ok(()),
        FunctionArguments::Subquery(query) if keyword == "array" => s.subquery(query),
        FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args,
            clauses,
        }) if keyword != "array" && clauses.is_empty() => {
            for arg in args {
                match arg {
                    FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => {
                        s.context_typed(e, Context::Argument(keyword))?;
                        expr(s, e)?
                    }
                    other => return Err(argument_refused(s, other, keyword)),
                }
            }
            Ok(())
        }
        _ => Err(s.refusal(format!("this form of {keyword} is not allowed"))),
    }
}

#[cold]
fn argument_refused<S: Surface + ?Sized>(s: &S, arg: &FunctionArg, label: &str) -> Refusal {
    let suffix = s.settings().suffix;
    if !s.settings().plain_calls {
        return s.refusal(format!("the argument {} is not allowed", excerpt(arg)));
    }
    match arg {
        FunctionArg::Unnamed(_) => s.refusal(format!(
            "{}() cannot take * as an argument{suffix}",
            label.to_lowercase()
        )),
        named => s.refusal(format!(
            "named arguments are not allowed{suffix} ({})",
            excerpt(named)
        )),
    }
}

/// An argument of a call, or of a table function in FROM.
pub fn function_arg<S: Surface + ?Sized>(s: &mut S, arg: &mut FunctionArg) -> Result<(), Refusal> {
    call_arg(s, arg, "")
}

fn call_arg<S: Surface + ?Sized>(
    s: &mut S,
    arg: &mut FunctionArg,
    label: &str,
) -> Result<(), Refusal> {
    if s.settings().plain_calls {
        return match arg {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => expr(s, e),
            other => Err(argument_refused(s, other, label)),
        };
    }
    match arg {
        FunctionArg::Unnamed(arg) => function_arg_expr(s, arg),
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
            function_arg_expr(s, arg)
        }
        other => Err(argument_refused(s, other, label)),
    }
}

fn function_arg_expr<S: Surface + ?Sized>(
    s: &mut S,
    arg: &mut FunctionArgExpr,
) -> Result<(), Refusal> {
    match arg {
        FunctionArgExpr::Expr(e) => expr(s, e),
        // count(*)
        FunctionArgExpr::Wildcard => Ok(()),
        // count(t.*): names a FROM item, which is checked on its own.
        FunctionArgExpr::QualifiedWildcard(name) => name_parts(name).map(|_| ()),
        other => Err(s.refusal(format!("the argument {} is not allowed", excerpt(other)))),
    }
}

/// An ORDER BY item; at the top of a query (`top`), a bare name may be an output column
/// name rather than a column reference.
pub fn order_by_expr<S: Surface + ?Sized>(
    s: &mut S,
    item: &mut OrderByExpr,
    top: bool,
) -> Result<(), Refusal> {
    let OrderByExpr {
        expr: e,
        options: _,
        with_fill,
    } = item;
    if with_fill.is_some() {
        return Err(s.refusal("WITH FILL is not allowed".to_string()));
    }
    match e {
        Expr::Identifier(ident) if top => identifier(s, ident, false),
        other => expr(s, other),
    }
}

pub fn window_spec<S: Surface + ?Sized>(s: &mut S, spec: &mut WindowSpec) -> Result<(), Refusal> {
    let WindowSpec {
        window_name,
        partition_by,
        order_by,
        window_frame,
    } = spec;
    if let Some(window) = window_name {
        check_ident(window)?;
    }
    exprs(s, partition_by)?;
    order_by_exprs(s, order_by)?;
    if let Some(WindowFrame {
        units: _,
        start_bound,
        end_bound,
    }) = window_frame
    {
        for bound in std::iter::once(start_bound).chain(end_bound.as_mut()) {
            match bound {
                WindowFrameBound::Preceding(Some(offset))
                | WindowFrameBound::Following(Some(offset)) => expr(s, offset)?,
                WindowFrameBound::CurrentRow
                | WindowFrameBound::Preceding(None)
                | WindowFrameBound::Following(None) => {}
            }
        }
    }
    Ok(())
}

pub fn wildcard_options(options: &WildcardAdditionalOptions) -> Result<(), Refusal> {
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
