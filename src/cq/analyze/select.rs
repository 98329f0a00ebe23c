//! The statement around them: one plain SELECT over one table, without the clauses an
//! incremental result cannot follow.

use super::*;

pub(super) struct Source {
    pub(super) schema: Option<String>,
    pub(super) table: String,
    pub(super) alias: Option<String>,
    /// The table's columns, when known (only looked up for joins, to qualify bare names).
    pub(super) known: Option<Vec<String>>,
}

impl Source {
    /// The name that qualifies the table's columns in the query.
    pub(super) fn name(&self) -> &str {
        self.alias.as_ref().unwrap_or(&self.table)
    }

    /// Whether `qualifier` names this table (as `check_qualifier` accepts it).
    pub(super) fn is_named(&self, qualifier: &[Ident]) -> bool {
        let qualifier: Vec<String> = qualifier.iter().map(fold).collect();
        match (&self.alias, qualifier.as_slice()) {
            (Some(alias), [name]) => name == alias,
            (None, [table]) => *table == self.table,
            (None, [schema, table]) => Some(schema) == self.schema.as_ref() && *table == self.table,
            _ => false,
        }
    }

    /// PostgreSQL hides the table name once an alias is given, so only the
    /// alias (or, without one, `table` / `schema.table`) may qualify a column.
    pub(super) fn check_qualifier(
        &self,
        qualifier: &[Ident],
        reference: &[Ident],
    ) -> Result<(), Refusal> {
        let qualifier: Vec<String> = qualifier.iter().map(fold).collect();
        let accepted = match (&self.alias, qualifier.as_slice()) {
            (Some(alias), [name]) => name == alias,
            (None, [table]) => *table == self.table,
            (None, [schema, table]) => Some(schema) == self.schema.as_ref() && *table == self.table,
            _ => false,
        };
        if accepted {
            return Ok(());
        }
        let expected = self.alias.as_ref().unwrap_or(&self.table);
        Err(refusal(format!(
            "column reference {} does not refer to the source table: qualify columns with \
             {expected} or not at all",
            Expr::CompoundIdentifier(reference.to_vec())
        )))
    }
}

pub(super) fn single_select(sql: &str) -> Result<Select, Refusal> {
    let mut statements = crate::query::analyze::parse_guarded(sql)?;
    let statement = match statements.len() {
        1 => statements.remove(0),
        0 => return Err(refusal("no statement found; expected one SELECT")),
        n => {
            return Err(refusal(format!(
                "a continuous query is exactly one SELECT statement, found {n} statements"
            )));
        }
    };
    let Statement::Query(query) = statement else {
        let rendered = statement.to_string();
        let kind = rendered.split_whitespace().next().unwrap_or_default();
        return Err(refusal(format!(
            "a continuous query must be a SELECT statement, not {kind}"
        )));
    };
    // Destructured in full so that a clause added by a future sqlparser fails
    // to compile here instead of being silently ignored.
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
    } = *query;
    if with.is_some() {
        return Err(not_supported("WITH"));
    }
    if order_by.is_some() {
        return Err(not_supported("ORDER BY"));
    }
    match limit_clause {
        Some(LimitClause::LimitOffset {
            limit,
            offset,
            limit_by,
        }) => {
            if limit.is_some() {
                return Err(not_supported("LIMIT"));
            }
            if offset.is_some() {
                return Err(not_supported("OFFSET"));
            }
            if !limit_by.is_empty() {
                return Err(not_supported("LIMIT BY"));
            }
        }
        Some(LimitClause::OffsetCommaLimit { .. }) => return Err(not_supported("LIMIT")),
        None => {}
    }
    if fetch.is_some() {
        return Err(not_supported("FETCH"));
    }
    if !locks.is_empty() {
        return Err(not_supported("FOR UPDATE / FOR SHARE"));
    }
    if for_clause.is_some() || settings.is_some() || format_clause.is_some() {
        return Err(not_supported("FOR / SETTINGS / FORMAT"));
    }
    if !pipe_operators.is_empty() {
        return Err(not_supported("the pipe operator |>"));
    }
    match *body {
        SetExpr::Select(select) => Ok(*select),
        SetExpr::SetOperation { op, .. } => Err(not_supported(op)),
        SetExpr::Query(_) => Err(not_supported("a parenthesized query")),
        other => Err(refusal(format!(
            "a continuous query must be a plain SELECT, not {other}"
        ))),
    }
}

/// The clauses of a SELECT that a continuous query may use.
pub(super) struct SelectParts {
    pub(super) projection: Vec<SelectItem>,
    pub(super) from: Vec<TableWithJoins>,
    pub(super) selection: Option<Expr>,
    pub(super) group_by: Vec<Expr>,
}

/// Refuses every clause of the SELECT that pg_beacon cannot maintain.
pub(super) fn select_parts(select: Select) -> Result<SelectParts, Refusal> {
    if text::walk::foreign_select_clauses(&select) {
        return Err(refusal(
            "a continuous query must be a plain PostgreSQL SELECT; this one uses syntax \
             from another SQL dialect",
        ));
    }
    // the rest is refused or used here (see foreign_select_clauses)
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
    match distinct {
        Some(Distinct::Distinct) => return Err(not_supported("DISTINCT")),
        Some(Distinct::On(_)) => return Err(not_supported("DISTINCT ON")),
        Some(Distinct::All) | None => {}
    }
    if top.is_some() {
        return Err(not_supported("TOP"));
    }
    if into.is_some() {
        return Err(not_supported("SELECT INTO"));
    }
    if having.is_some() {
        return Err(not_supported("HAVING"));
    }
    if !named_window.is_empty() {
        return Err(not_supported("WINDOW"));
    }
    if qualify.is_some() {
        return Err(not_supported("QUALIFY"));
    }
    if !lateral_views.is_empty() {
        return Err(not_supported("LATERAL VIEW"));
    }
    let group_by = match group_by {
        GroupByExpr::All(_) => return Err(not_supported("GROUP BY ALL")),
        GroupByExpr::Expressions(_, modifiers) if !modifiers.is_empty() => {
            return Err(not_supported("GROUP BY ... WITH ROLLUP / CUBE / TOTALS"));
        }
        GroupByExpr::Expressions(exprs, _) => exprs,
    };
    Ok(SelectParts {
        projection,
        from,
        selection,
        group_by,
    })
}

pub(super) fn not_a_plain_table(source: &TableFactor) -> Refusal {
    refusal(format!(
        "the source {source} is not supported in a continuous query; name a plain table"
    ))
}

/// The one table of a single-table query, or the tables of a join (see `joins`).
pub(super) fn source_tables(
    from: &[TableWithJoins],
    columns_of: &dyn Fn(&str) -> Option<Vec<String>>,
) -> Result<(Vec<Source>, Vec<super::joins::RawJoin>), Refusal> {
    let table = match from {
        [table] => table,
        [] => return Err(refusal("a continuous query needs a source table in FROM")),
        _ => {
            return Err(refusal(
                "comma joins (FROM a, b) are not supported in a continuous query; write \
                 JOIN ... ON with an equality between the tables' columns",
            ));
        }
    };
    let mut sources = vec![plain_table(&table.relation)?];
    let mut joins = Vec::new();
    for join in &table.joins {
        let (kind, on) = super::joins::join_kind(join)?;
        sources.push(plain_table(&join.relation)?);
        joins.push(super::joins::RawJoin { kind, on });
    }
    if !joins.is_empty() {
        for source in &mut sources {
            source.known = columns_of(&source.table);
        }
    }
    Ok((sources, joins))
}

/// A plain table of the project, with an optional alias.
pub(super) fn plain_table(relation: &TableFactor) -> Result<Source, Refusal> {
    let table = TableWithJoins {
        relation: relation.clone(),
        joins: Vec::new(),
    };
    let (name, alias) = match &table.relation {
        // Destructured in full so that a new table modifier fails to compile
        // here instead of being silently accepted.
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
            if args.is_some() {
                return Err(refusal(format!(
                    "table functions are not supported in a continuous query ({})",
                    table.relation
                )));
            }
            if sample.is_some() {
                return Err(not_supported("TABLESAMPLE"));
            }
            if !with_hints.is_empty()
                || version.is_some()
                || *with_ordinality
                || !partitions.is_empty()
                || json_path.is_some()
                || !index_hints.is_empty()
            {
                return Err(not_a_plain_table(&table.relation));
            }
            (name, alias)
        }
        TableFactor::Derived { lateral: true, .. } => return Err(not_supported("LATERAL")),
        TableFactor::Derived { .. } => {
            return Err(subqueries_refused(format!("in FROM: {}", table.relation)));
        }
        TableFactor::NestedJoin { .. } => {
            return Err(refusal(
                "parenthesized joins are not supported in a continuous query; write the \
                 joins one after the other",
            ));
        }
        TableFactor::TableFunction { .. }
        | TableFactor::Function { .. }
        | TableFactor::UNNEST { .. }
        | TableFactor::JsonTable { .. }
        | TableFactor::OpenJsonTable { .. }
        | TableFactor::XmlTable { .. } => {
            return Err(refusal(format!(
                "table functions are not supported in a continuous query ({})",
                table.relation
            )));
        }
        other => return Err(not_a_plain_table(other)),
    };
    let parts = name
        .0
        .iter()
        .map(|part| part.as_ident())
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| not_supported(format!("the table name {name}")))?;
    let (schema, table_name) = match parts.as_slice() {
        // sqlparser reads `FROM ONLY t` as table `ONLY` aliased `t`; an
        // unquoted table cannot be called `only` in PostgreSQL, so this is
        // always the ONLY keyword.
        [only] if only.quote_style.is_none() && only.value.eq_ignore_ascii_case("only") => {
            return Err(not_supported("FROM ONLY"));
        }
        [table] => (None, fold(table)),
        [schema, table] => (Some(fold(schema)), fold(table)),
        _ => {
            return Err(refusal(format!(
                "table name {name} has too many parts; use table or schema.table"
            )));
        }
    };
    let alias = match alias {
        Some(alias) if !alias.columns.is_empty() || alias.at.is_some() => {
            return Err(refusal(format!(
                "the table alias {alias} is not supported in a continuous query; use a plain \
                 alias without column names"
            )));
        }
        Some(alias) => Some(fold(&alias.name)),
        None => None,
    };
    Ok(Source {
        schema,
        table: table_name,
        alias,
        known: None,
    })
}
