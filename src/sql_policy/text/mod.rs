//! The text layer of the policy: the one guarded parser and the one renderer every
//! surface of user SQL reads and writes text through. The decisive check, on what
//! PostgreSQL resolved, is [`super::analyzed`].

pub mod parse;
pub mod render;
pub mod walk;

pub use parse::Limits;

#[cfg(any(test, feature = "pg_test"))]
mod tests;
