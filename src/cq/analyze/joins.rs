//! The joins of a continuous query: inner and left equi-joins forming a tree (each joined
//! table hangs from one earlier table, its parent, by one or more column equalities).
//!
//! The maintenance (plan/joins.rs) depends on that shape: a change of one table is
//! joined outwards along the tree's edges, each edge is locked by the values of its
//! columns, and a left-joined table's match is decided by its equality columns alone.
//! So what would break it is refused here, naming the part: other join types, joins
//! without an equality, conditions linking a table to two earlier ones, anything but
//! equalities in a LEFT JOIN's ON, and a table that is left-joined and also appears again.

use super::*;
use sqlparser::ast::{Join, JoinConstraint, JoinOperator};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
}

/// A joined table (every table of the query but the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedTable {
    pub schema: Option<String>,
    pub table: String,
    /// The name its columns are qualified with: its alias, or its name.
    pub alias: String,
    pub kind: JoinKind,
    /// The table it hangs from: 0 for the query's first table, i for `joins[i - 1]`.
    pub parent: usize,
    /// (parent column, own column) of each equality of its ON condition.
    pub pairs: Vec<(String, String)>,
    /// The rest of an inner join's ON condition, as SQL.
    pub filter: Option<String>,
    /// Every column of the table the query references, sorted.
    pub columns: Vec<String>,
}

pub(super) struct RawJoin {
    pub(super) kind: JoinKind,
    pub(super) on: Expr,
}

pub(super) fn join_kind(join: &Join) -> Result<(JoinKind, Expr), Refusal> {
    if join.global {
        return Err(not_supported("GLOBAL JOIN"));
    }
    let (kind, constraint) = match &join.join_operator {
        JoinOperator::Join(c) | JoinOperator::Inner(c) => (JoinKind::Inner, c),
        JoinOperator::Left(c) | JoinOperator::LeftOuter(c) => (JoinKind::Left, c),
        JoinOperator::Right(_) | JoinOperator::RightOuter(_) => {
            return Err(refusal(format!(
                "RIGHT JOIN is not supported in a continuous query ({}); write it as a LEFT \
                 JOIN with the tables swapped",
                join.relation
            )))
        }
        JoinOperator::FullOuter(_) => {
            return Err(refusal(format!(
                "FULL JOIN is not supported in a continuous query ({})",
                join.relation
            )))
        }
        JoinOperator::CrossJoin(_) => {
            return Err(refusal(format!(
                "CROSS JOIN is not supported in a continuous query ({}); join on an equality \
                 of columns",
                join.relation
            )))
        }
        other => {
            return Err(refusal(format!(
                "this kind of join is not supported in a continuous query ({}); use JOIN or \
                 LEFT JOIN ... ON",
                Join {
                    relation: join.relation.clone(),
                    global: false,
                    join_operator: other.clone(),
                }
            )))
        }
    };
    match constraint {
        JoinConstraint::On(on) => Ok((kind, on.clone())),
        JoinConstraint::Using(_) => Err(refusal(format!(
            "JOIN ... USING is not supported in a continuous query ({}); write ON with the \
             equalities",
            join.relation
        ))),
        JoinConstraint::Natural => Err(not_supported("NATURAL JOIN")),
        JoinConstraint::None => Err(refusal(format!(
            "the join with {} needs an ON condition",
            join.relation
        ))),
    }
}

fn conjuncts(expr: &Expr, out: &mut Vec<Expr>) {
    match unparenthesized(expr) {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            conjuncts(left, out);
            conjuncts(right, out);
        }
        other => out.push(other.clone()),
    }
}

impl Cx {
    /// A column of table `table` as a join's expressions name it: `"alias".column`.
    pub(super) fn qualify(&mut self, table: usize, column: Ident) -> Expr {
        self.table_columns[table].insert(column.value.clone());
        Expr::CompoundIdentifier(vec![
            Ident::with_quote('"', self.tables[table].name()),
            column,
        ])
    }

    /// Which table a column reference (bare or qualified) belongs to, and the column; None
    /// for anything but a column reference.
    fn column_of(&self, expr: &Expr) -> Result<Option<(usize, String)>, Refusal> {
        match unparenthesized(expr) {
            Expr::Identifier(ident) => {
                let column = fold(ident);
                self.owner_of(&column).map(|table| Some((table, column)))
            }
            Expr::CompoundIdentifier(parts) => {
                let Some((column, qualifier)) = parts.split_last() else {
                    return Ok(None);
                };
                Ok(Some((
                    self.qualified_table(qualifier, parts)?,
                    fold(column),
                )))
            }
            _ => Ok(None),
        }
    }

    /// The table a qualifier names.
    pub(super) fn qualified_table(
        &self,
        qualifier: &[Ident],
        reference: &[Ident],
    ) -> Result<usize, Refusal> {
        self.tables
            .iter()
            .position(|t| t.is_named(qualifier))
            .ok_or_else(|| {
                refusal(format!(
                    "column reference {} does not refer to a table of the query: qualify \
                     columns with {}",
                    Expr::CompoundIdentifier(reference.to_vec()),
                    self.tables
                        .iter()
                        .map(|t| t.name().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })
    }

    /// The one table that has a bare column name.
    pub(super) fn owner_of(&self, column: &str) -> Result<usize, Refusal> {
        if self.tables.iter().all(|t| t.known.is_none()) {
            return Err(refusal(format!(
                "qualify column \"{column}\" with its table's name or alias: the query joins \
                 several tables"
            )));
        }
        let owners: Vec<usize> = self
            .tables
            .iter()
            .enumerate()
            .filter(|(_, t)| {
                t.known
                    .as_ref()
                    .is_some_and(|known| known.iter().any(|c| c == column))
            })
            .map(|(i, _)| i)
            .collect();
        match owners.as_slice() {
            [one] => Ok(*one),
            [] => Err(refusal(format!(
                "column \"{column}\" is not a column of any table of the query"
            ))),
            several => Err(Refusal::ambiguous(format!(
                "column reference \"{column}\" is ambiguous: {} all have it; qualify it",
                several
                    .iter()
                    .map(|i| self.tables[*i].name().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Checks join `index` (the table at `tables[index]`) and splits its ON condition.
    pub(super) fn join(&mut self, index: usize, raw: RawJoin) -> Result<JoinedTable, Refusal> {
        let own = self.tables[index].name().to_string();
        let mut parts = Vec::new();
        conjuncts(&raw.on, &mut parts);
        let mut pairs = Vec::new();
        let mut parent = None;
        let mut rest = Vec::new();
        for part in parts {
            let equality = match &part {
                Expr::BinaryOp {
                    left,
                    op: BinaryOperator::Eq,
                    right,
                } => match (self.column_of(left)?, self.column_of(right)?) {
                    (Some(l), Some(r)) if l.0 == index && r.0 < index => Some((r, l.1)),
                    (Some(l), Some(r)) if r.0 == index && l.0 < index => Some((l, r.1)),
                    _ => None,
                },
                _ => None,
            };
            match equality {
                Some(((table, column), own_column)) => {
                    if parent.is_some_and(|p| p != table) {
                        return Err(refusal(format!(
                            "the ON condition of {own} links it to two earlier tables ({} and \
                             {}); a continuous query's joins form a tree: join each table to \
                             one earlier table, and move other conditions to WHERE",
                            self.tables[parent.unwrap_or(0)].name(),
                            self.tables[table].name()
                        )));
                    }
                    parent = Some(table);
                    self.table_columns[table].insert(column.clone());
                    self.table_columns[index].insert(own_column.clone());
                    self.columns.insert(column.clone());
                    self.columns.insert(own_column.clone());
                    pairs.push((column, own_column));
                }
                None if raw.kind == JoinKind::Left => {
                    return Err(refusal(format!(
                        "the ON condition of LEFT JOIN {own} may only hold equalities between \
                         its columns and an earlier table's ({part} is not one); filter in \
                         WHERE instead"
                    )));
                }
                None => rest.push(part),
            }
        }
        let filter = match rest.into_iter().reduce(|a, b| Expr::BinaryOp {
            left: Box::new(a),
            op: BinaryOperator::And,
            right: Box::new(b),
        }) {
            Some(expr) => Some(self.render(&expr, Place::Where)?),
            None => None,
        };
        let Some(parent) = parent else {
            return Err(refusal(format!(
                "the join with {own} needs an equality between one of its columns and a \
                 column of an earlier table in its ON condition (non-equi joins are not \
                 supported in a continuous query)"
            )));
        };
        Ok(JoinedTable {
            schema: self.tables[index].schema.clone(),
            table: self.tables[index].table.clone(),
            alias: own,
            kind: raw.kind,
            parent,
            pairs,
            filter,
            columns: Vec::new(),
        })
    }

    /// Refuses two tables under one name: their columns could not be told apart.
    pub(super) fn check_names(&self) -> Result<(), Refusal> {
        for (i, a) in self.tables.iter().enumerate() {
            for b in &self.tables[i + 1..] {
                if a.name() == b.name() {
                    return Err(refusal(format!(
                        "table name \"{}\" is specified more than once; give each occurrence \
                         its own alias",
                        a.name()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Refuses a left-joined table that appears again (its change is not a plain
    /// difference then).
    pub(super) fn check_tables(&self, joins: &[JoinedTable]) -> Result<(), Refusal> {
        for (i, join) in joins.iter().enumerate() {
            let table = &self.tables[i + 1].table;
            let occurrences = self.tables.iter().filter(|t| t.table == *table).count();
            if join.kind == JoinKind::Left && occurrences > 1 {
                return Err(refusal(format!(
                    "table \"{table}\" is left-joined and also appears elsewhere in the query; \
                     a continuous query may self-join a table with inner joins only"
                )));
            }
        }
        Ok(())
    }
}
