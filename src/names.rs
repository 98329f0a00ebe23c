//! Validation and quoting of the names pg_beacon turns into SQL identifiers.

use std::fmt;

/// PostgreSQL's NAMEDATALEN - 1: longer identifiers are silently truncated by
/// the server, which would make distinct names collide.
pub const MAX_IDENT_BYTES: usize = 63;
/// Leaves room for the longest derived identifier, `beacon_<project>_admin`.
pub const MAX_PROJECT_BYTES: usize = MAX_IDENT_BYTES - "beacon_".len() - "_admin".len();

/// Columns every table has (PostgreSQL's) or every collection has (pg_beacon's);
/// a property mapped onto one of them would shadow or clash with it.
const RESERVED_COLUMNS: [&str; 9] = [
    "tableoid", "xmin", "cmin", "xmax", "cmax", "ctid", "_id", "_time", "_user",
];

const PATTERN_RULE: &str =
    "must start with a lowercase letter and contain only lowercase letters, digits and underscores";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    /// "project" or "collection".
    pub kind: &'static str,
    pub name: String,
    pub reason: String,
    /// The name is well-formed but belongs to PostgreSQL or pg_beacon.
    pub reserved: bool,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reserved {
            write!(f, "{} name {:?} is reserved", self.kind, self.name)
        } else {
            write!(
                f,
                "invalid {} name {:?}: {}",
                self.kind, self.name, self.reason
            )
        }
    }
}

pub fn validate_project_name(name: &str) -> Result<(), NameError> {
    check_shape("project", name, MAX_PROJECT_BYTES)?;
    // The project becomes a schema; these would collide with existing schemas
    // or with PostgreSQL's reserved `pg_` prefix.
    let reason = if name.starts_with("pg_") {
        "names starting with pg_ are reserved for PostgreSQL"
    } else if matches!(name, "public" | "beacon" | "information_schema") {
        "the schema already exists in every database"
    } else {
        return Ok(());
    };
    Err(error("project", name, reason.to_string(), true))
}

pub fn validate_collection_name(name: &str) -> Result<(), NameError> {
    check_shape("collection", name, MAX_IDENT_BYTES).map_err(|mut e| {
        // The pattern already refuses these; the hint saves users guessing why
        // `_users` looks fine but is refused.
        if name.starts_with('_') {
            e.reason.push_str(
                "; names starting with an underscore are reserved for pg_beacon's own tables",
            );
        }
        e
    })
}

fn check_shape(kind: &'static str, name: &str, max: usize) -> Result<(), NameError> {
    let reason = if name.is_empty() {
        "must not be empty".to_string()
    } else if name.len() > max {
        format!("must be at most {max} bytes long (it is {})", name.len())
    } else if !name.starts_with(|c: char| c.is_ascii_lowercase())
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        PATTERN_RULE.to_string()
    } else {
        return Ok(());
    };
    Err(error(kind, name, reason, false))
}

fn error(kind: &'static str, name: &str, reason: String, reserved: bool) -> NameError {
    NameError {
        kind,
        name: name.to_string(),
        reason,
        reserved,
    }
}

pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

/// Relies on standard_conforming_strings = on (the default since 9.1), under
/// which backslashes in '...' are ordinary characters.
pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// `body` as a dollar-quoted literal whose tag does not occur in it, so that nothing in
/// the body (a string literal from a user's query, say) can close the quotes.
pub fn dollar_quote(body: &str) -> String {
    let mut tag = "$beacon$".to_string();
    while body.contains(&tag) {
        tag.insert(tag.len() - 1, '_');
    }
    format!("{tag}\n{body}\n{tag}")
}

/// Maps a JSON property name to a column name, to be used quoted.
///
/// Must be stable across processes and releases, since the same property has
/// to land in the same column forever; hence the fixed FNV-1a hash.
pub fn column_for_property(property: &str, taken: impl Fn(&str) -> bool) -> String {
    let hash = format!("{:08x}", fnv1a(property));
    let base = if property.is_empty() {
        format!("_{hash}")
    } else if RESERVED_COLUMNS.contains(&property) {
        format!("{property}_{hash}")
    } else if property.len() > MAX_IDENT_BYTES {
        // 54 + "_" + 8 hex digits = 63; hashing the full name keeps names
        // that share a long prefix apart.
        format!("{}_{hash}", truncate(property, MAX_IDENT_BYTES - 9))
    } else {
        property.to_string()
    };
    if !taken(&base) {
        return base;
    }
    (2..=u32::MAX)
        .map(|n| {
            let suffix = format!("_{n}");
            format!(
                "{}{suffix}",
                truncate(&base, MAX_IDENT_BYTES - suffix.len())
            )
        })
        .find(|candidate| !taken(candidate))
        .expect("a table holds at most 1600 columns")
}

fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

fn truncate(s: &str, max: usize) -> &str {
    let mut end = max.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dollar_quote_picks_a_tag_the_body_does_not_contain() {
        assert_eq!(dollar_quote("SELECT 1"), "$beacon$\nSELECT 1\n$beacon$");
        assert_eq!(
            dollar_quote("SELECT '$beacon$'"),
            "$beacon_$\nSELECT '$beacon$'\n$beacon_$"
        );
        assert_eq!(
            dollar_quote("$beacon$ $beacon_$"),
            "$beacon__$\n$beacon$ $beacon_$\n$beacon__$"
        );
    }

    fn free(_: &str) -> bool {
        false
    }

    #[test]
    fn longest_project_name_leaves_room_for_its_roles() {
        assert_eq!(MAX_PROJECT_BYTES, 50);
        let longest_role = format!("beacon_{}_admin", "a".repeat(MAX_PROJECT_BYTES));
        assert_eq!(longest_role.len(), MAX_IDENT_BYTES);
    }

    #[test]
    fn project_names() {
        for ok in ["shop", "a", "shop_2", "a_b_c9", &"a".repeat(50)] {
            assert_eq!(validate_project_name(ok), Ok(()), "{ok}");
        }
        let e = validate_project_name(&"a".repeat(51)).unwrap_err();
        assert!(!e.reserved);
        assert!(e.reason.contains("50"), "{}", e.reason);

        let e = validate_project_name("Shop").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid project name \"Shop\": must start with a lowercase letter and \
             contain only lowercase letters, digits and underscores"
        );
        assert_eq!(e.kind, "project");
        assert!(!e.reserved);

        for bad in [
            "",
            "1shop",
            "shop-x",
            "shop x",
            "shöp",
            "_shop",
            "shop\"; DROP SCHEMA public CASCADE; --",
            "shop'",
            "shop\0",
        ] {
            let e = validate_project_name(bad).unwrap_err();
            assert!(!e.reserved, "{bad:?}");
        }
        assert!(validate_project_name("")
            .unwrap_err()
            .reason
            .contains("empty"));

        for reserved in ["public", "beacon", "information_schema", "pg_foo", "pg_"] {
            let e = validate_project_name(reserved).unwrap_err();
            assert!(e.reserved, "{reserved}");
        }
        assert_eq!(
            validate_project_name("public").unwrap_err().to_string(),
            "project name \"public\" is reserved"
        );
        // Only the exact names and the pg_ prefix are reserved.
        for ok in ["publics", "beacons", "pg", "pgfoo", "my_pg_x"] {
            assert_eq!(validate_project_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn collection_names() {
        for ok in ["orders", "o", "order_items_2", &"c".repeat(63)] {
            assert_eq!(validate_collection_name(ok), Ok(()), "{ok}");
        }
        let e = validate_collection_name(&"c".repeat(64)).unwrap_err();
        assert!(e.reason.contains("63"));
        assert_eq!(e.kind, "collection");

        for underscored in ["_rejected", "_users", "_x"] {
            let e = validate_collection_name(underscored).unwrap_err();
            assert!(!e.reserved);
            assert!(e.reason.contains("underscore"), "{}", e.reason);
        }
        for bad in [
            "",
            "Orders",
            "9a",
            "a b",
            "a-b",
            "orders; DROP TABLE x",
            "a\"b",
            "é",
        ] {
            assert!(validate_collection_name(bad).is_err(), "{bad:?}");
        }
        // Collections live inside the project's schema, so `public` is fine.
        assert_eq!(validate_collection_name("public"), Ok(()));
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_ident("name"), "\"name\"");
        assert_eq!(quote_ident("Name"), "\"Name\"");
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident(""), "\"\"");
        assert_eq!(
            quote_ident("x\"; DROP TABLE t; --"),
            "\"x\"\"; DROP TABLE t; --\""
        );
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_literal("a\\'b"), "'a\\''b'");
        assert_eq!(quote_literal(""), "''");
        assert_eq!(quote_literal("''"), "''''''");
    }

    #[test]
    fn ordinary_properties_are_kept() {
        for p in [
            "name",
            "Name",
            "NAME",
            "ünïcödé",
            "x\"; DROP TABLE t; --",
            "a\"b",
            "with space",
            " ",
            "XMIN",
            "_idx",
            "id",
            &"a".repeat(63),
        ] {
            assert_eq!(column_for_property(p, free), p);
        }
    }

    #[test]
    fn case_variants_stay_distinct() {
        let a = column_for_property("Name", free);
        let b = column_for_property("name", free);
        assert_ne!(a, b);
        assert_eq!(quote_ident(&a), "\"Name\"");
    }

    #[test]
    fn reserved_and_empty_properties_get_hashed() {
        assert_eq!(fnv1a(""), 0x811c_9dc5);
        assert_eq!(fnv1a("a"), 0xe40c_292c);
        assert_eq!(column_for_property("", free), "_811c9dc5");
        for r in RESERVED_COLUMNS {
            let c = column_for_property(r, free);
            assert_eq!(c, format!("{r}_{:08x}", fnv1a(r)));
            assert_eq!(c.len(), r.len() + 9);
        }
        assert_ne!(
            column_for_property("xmin", free),
            column_for_property("xmax", free)
        );
    }

    #[test]
    fn long_properties() {
        let prefix = "p".repeat(63);
        let a = format!("{prefix}_first");
        let b = format!("{prefix}_second");
        let (ca, cb) = (column_for_property(&a, free), column_for_property(&b, free));
        assert_ne!(ca, cb);
        assert_eq!(ca.len(), 63);
        assert_eq!(ca, format!("{}_{:08x}", "p".repeat(54), fnv1a(&a)));
        // Deterministic.
        assert_eq!(ca, column_for_property(&a, free));

        // 64 bytes is the first length that needs hashing.
        assert_eq!(column_for_property(&"q".repeat(64), free).len(), 63);

        // "é" is 2 bytes and straddles byte 54, so the cut moves back to 53.
        let multibyte = format!("{}é{}", "x".repeat(53), "y".repeat(20));
        let c = column_for_property(&multibyte, free);
        assert_eq!(c, format!("{}_{:08x}", "x".repeat(53), fnv1a(&multibyte)));

        let all_multibyte = "ü".repeat(40);
        let c = column_for_property(&all_multibyte, free);
        assert!(c.len() <= 63);
        assert!(c.starts_with(&"ü".repeat(27)));
    }

    #[test]
    fn taken_names_get_suffixes() {
        let used = ["status", "status_2", "status_3"];
        assert_eq!(
            column_for_property("status", |c| used.contains(&c)),
            "status_4"
        );
        assert_eq!(column_for_property("status", |c| c == "status"), "status_2");

        // The suffix must not push the name past 63 bytes.
        let max = "m".repeat(63);
        let c = column_for_property(&max, |c| c == max);
        assert_eq!(c, format!("{}_2", "m".repeat(61)));

        let long = format!("{}ü", "m".repeat(61));
        let c = column_for_property(&long, |c| c == long);
        assert_eq!(c, format!("{}_2", "m".repeat(61)));

        let mut taken: Vec<String> = vec![max.clone()];
        taken.extend((2..=9).map(|n| format!("{}_{n}", "m".repeat(61))));
        let c = column_for_property(&max, |c| taken.iter().any(|t| t == c));
        // A two-digit suffix costs one more byte of the base.
        assert_eq!(c, format!("{}_10", "m".repeat(60)));
        assert!(c.len() <= 63);

        // Hashed names go through the same loop.
        let hashed = column_for_property("", free);
        assert_eq!(
            column_for_property("", |c| c == hashed),
            format!("{hashed}_2")
        );
    }
}
