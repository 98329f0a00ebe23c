//! Pieces of the walk every surface shares.

use sqlparser::ast::{Select, SelectFlavor};

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
