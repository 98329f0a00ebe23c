//! The attack suite: what an attacker at each level (outsider, monitoring role, owner of a
//! schema, reader, writer, admin of project `alpha`) would try against pg_beacon, one
//! module per class of hole. Every attack asserts that it failed with a sensible SQLSTATE
//! or was harmless, and that nothing ran with elevated privileges: the attacker's planted
//! canary left no trace (see tests/common/attack.rs), its session is unchanged, nothing of
//! another project was seen, and the database is as it was. Each canary and payload has a
//! control showing that it does leave a trace when a privileged role runs it.
//!
//! One test binary, so that one run shows every finding (cargo stops at the first failing
//! binary). Run with: `./scripts/test.sh attacks` (every test function's name starts with
//! `attacks_`).

mod common;

#[path = "attacks/analysis.rs"]
mod analysis;
#[path = "attacks/containment.rs"]
mod containment;
#[path = "attacks/definer.rs"]
mod definer;
#[path = "attacks/functional.rs"]
mod functional;
#[path = "attacks/limits.rs"]
mod limits;
#[path = "attacks/literals.rs"]
mod literals;
#[path = "attacks/roles.rs"]
mod roles;
#[path = "attacks/search_path.rs"]
mod search_path;
#[path = "attacks/types.rs"]
mod types;
#[path = "attacks/views.rs"]
mod views;
#[path = "attacks/writers.rs"]
mod writers;
