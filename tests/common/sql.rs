//! Small statement helpers for tests that compare relations: each panics with the
//! statement and PostgreSQL's error, so a failure names what ran.

use postgres::Client;

pub fn run(client: &mut Client, sql: &str) {
    client
        .batch_execute(sql)
        .unwrap_or_else(|e| panic!("`{sql}`: {e:?}"));
}

pub fn one_i64(client: &mut Client, sql: &str) -> i64 {
    client
        .query_one(sql, &[])
        .unwrap_or_else(|e| panic!("`{sql}`: {e:?}"))
        .get(0)
}

/// Rows of `a` not in `b` plus rows of `b` not in `a`, as multisets.
pub fn differences(client: &mut Client, a: &str, b: &str) -> i64 {
    one_i64(
        client,
        &format!("SELECT count(*) FROM (({a}) EXCEPT ALL ({b})) x"),
    ) + one_i64(
        client,
        &format!("SELECT count(*) FROM (({b}) EXCEPT ALL ({a})) x"),
    )
}
