//! How PostgreSQL reads names in parsed SQL, shared by the three checkers of user SQL
//! (continuous queries, stream filters, `beacon.query`), so that they agree on what a name
//! refers to.

use sqlparser::ast::{Expr, Ident, ObjectName};

/// The identifier as PostgreSQL resolves it: unquoted names are folded to lower case
/// (ASCII only, as PostgreSQL does in multibyte encodings), quoted names are kept verbatim.
pub fn fold(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_ascii_lowercase()
    }
}

/// Each part of a dotted name, folded; None when a part is not a plain identifier.
pub fn folded_parts(name: &ObjectName) -> Option<Vec<String>> {
    name.0
        .iter()
        .map(|part| part.as_ident().map(fold))
        .collect()
}

/// Parentheses around a whole expression carry no meaning (PostgreSQL does not even
/// keep them).
pub fn unparenthesized(expr: &Expr) -> &Expr {
    match expr {
        Expr::Nested(inner) => unparenthesized(inner),
        other => other,
    }
}
