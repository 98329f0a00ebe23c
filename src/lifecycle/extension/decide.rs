//! What to do with a statement that would drop extension pg_beacon, given the projects that
//! still have a schema: pure, so that every combination is tested without a server.
//!
//! Projects are not members of the extension (their schemas, tables, generated functions
//! and triggers belong to the project owner roles, and the roles to the cluster), so
//! PostgreSQL's own drop would leave them behind with triggers calling into a schema that
//! is gone. Without CASCADE the statement is refused while any project is left; with
//! CASCADE every project is dropped first, as `beacon.drop_project` drops one.

use crate::names::quote_literal;

/// A statement that drops extension pg_beacon, directly or through what it drops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropping {
    /// `DROP EXTENSION … pg_beacon …`
    Extension,
    /// `DROP SCHEMA … <the extension's schema> …`: the extension lives in it.
    Schema(String),
    /// `DROP OWNED BY … <the extension owner> …`: the extension is one of its objects.
    OwnedBy(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing of pg_beacon's would be left behind: PostgreSQL goes on alone.
    Pass,
    /// Refused with SQLSTATE 2BP01, as PostgreSQL refuses a drop with dependents.
    Refuse { message: String, hint: String },
    /// Drop these projects first (CASCADE), then let PostgreSQL go on.
    DropProjects(Vec<String>),
}

/// How many project names a message lists before it says how many more there are.
const LISTED: usize = 10;

pub fn decide(dropping: &Dropping, cascade: bool, projects: &[String]) -> Decision {
    if projects.is_empty() {
        Decision::Pass
    } else if cascade {
        Decision::DropProjects(projects.to_vec())
    } else {
        Decision::Refuse {
            message: refusal(dropping, projects),
            hint: hint(dropping, projects),
        }
    }
}

fn listed(projects: &[String]) -> String {
    let mut names: Vec<String> = projects
        .iter()
        .take(LISTED)
        .map(|p| format!("\"{p}\""))
        .collect();
    if projects.len() > LISTED {
        names.push(format!("and {} more", projects.len() - LISTED));
    }
    names.join(", ")
}

fn refusal(dropping: &Dropping, projects: &[String]) -> String {
    let which = if projects.len() == 1 {
        "a project"
    } else {
        "projects"
    };
    let projects = listed(projects);
    match dropping {
        Dropping::Extension => {
            format!("cannot drop extension pg_beacon because it has {which}: {projects}")
        }
        Dropping::Schema(schema) => format!(
            "cannot drop schema \"{schema}\": extension pg_beacon lives in it and has {which}: {projects}"
        ),
        Dropping::OwnedBy(role) => format!(
            "cannot drop the objects owned by \"{role}\": they include extension pg_beacon, \
             which has {which}: {projects}"
        ),
    }
}

fn hint(dropping: &Dropping, projects: &[String]) -> String {
    let drops: Vec<String> = projects
        .iter()
        .take(LISTED)
        .map(|p| format!("SELECT beacon.drop_project({});", quote_literal(p)))
        .collect();
    let more = if projects.len() > LISTED {
        " … (see beacon.projects)"
    } else {
        ""
    };
    let cascade = match dropping {
        Dropping::Extension => "DROP EXTENSION pg_beacon CASCADE".to_string(),
        Dropping::Schema(schema) => format!("DROP SCHEMA \"{schema}\" CASCADE"),
        Dropping::OwnedBy(role) => format!("DROP OWNED BY \"{role}\" CASCADE"),
    };
    format!(
        "Drop them first ({}{more}), or with the extension: {cascade} drops every project \
         with its data, and its roles unless another database of the cluster uses them.",
        drops.join(" ")
    )
}

#[cfg(test)]
mod tests;
