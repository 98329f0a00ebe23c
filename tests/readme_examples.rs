//! The README's SQL examples, run as written, in order, in one session of a fresh database,
//! and a few of the results the README states about them.
//!
//! An example is a fenced block opened with ```sql (must run) or ```sql-error (must fail, with
//! the `SQLSTATE <code>` it names); other fences (```sh, …) and indented blocks are not run.

mod common;

use postgres::error::DbError;
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, Notification};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The README has this many SQL examples today; fewer found means the extraction or the
/// README's fences broke, and the test would check nothing.
const MIN_BLOCKS: usize = 6;

/// The continuous query example's defining query, as the README writes it.
const CQ_QUERY: &str =
    "SELECT url, count(*) AS views, sum(price) AS revenue FROM pageview GROUP BY url";

/// What the README says `beacon.query` returns, as the README writes it.
const QUERY_ROW: &str = r#"{"url": "/cart", "count": 1}"#;

/// How the README shows the event that the stream example's subscription receives.
const STREAM_EVENT: &str = r#""event": {"_id": 3, "url": "/checkout""#;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// ```sql: must run.
    Sql,
    /// ```sql-error: must fail.
    SqlError,
}

#[derive(Debug, PartialEq, Eq)]
struct Block {
    kind: Kind,
    /// 1-based line of the block's first SQL line in the Markdown file.
    line: usize,
    sql: String,
}

impl Block {
    fn first_line(&self) -> &str {
        self.sql
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("")
    }
}

/// The ```sql and ```sql-error blocks of a Markdown text, in order. A fence is a line that
/// starts (after indentation) with three backticks; its tag is the rest of the line; a block
/// ends at the next line that is only three backticks. Blocks with any other tag are skipped
/// whole. An unclosed fence or an empty SQL block is an error.
fn sql_blocks(markdown: &str) -> Result<Vec<Block>, String> {
    let mut blocks = Vec::new();
    // (kind, or None for a fence that is not run; line of the opening fence; lines so far)
    let mut open: Option<(Option<Kind>, usize, Vec<&str>)> = None;
    for (index, line) in markdown.lines().enumerate() {
        let number = index + 1;
        let trimmed = line.trim();
        match open.as_mut() {
            None => {
                if let Some(tag) = trimmed.strip_prefix("```") {
                    let kind = match tag.trim() {
                        "sql" => Some(Kind::Sql),
                        "sql-error" => Some(Kind::SqlError),
                        _ => None,
                    };
                    open = Some((kind, number, Vec::new()));
                }
            }
            Some((kind, fence_line, lines)) => {
                if trimmed == "```" {
                    if let Some(kind) = *kind {
                        let sql = lines.join("\n");
                        if sql.trim().is_empty() {
                            return Err(format!("empty SQL block at line {fence_line}"));
                        }
                        blocks.push(Block {
                            kind,
                            line: *fence_line + 1,
                            sql,
                        });
                    }
                    open = None;
                } else {
                    lines.push(line);
                }
            }
        }
    }
    match open {
        Some((_, fence_line, _)) => Err(format!("the fence at line {fence_line} is never closed")),
        None => Ok(blocks),
    }
}

/// Lines outside fences that look like SQL in an indented code block: an example written
/// the old way, which the test would silently skip.
fn unfenced_sql(markdown: &str) -> Vec<(usize, String)> {
    // not COPY: the benchmark output's "COPY into bare table" lines are indented too
    const STARTS: [&str; 17] = [
        "SELECT", "CREATE", "DROP", "ALTER", "INSERT", "UPDATE", "DELETE", "WITH", "LISTEN",
        "NOTIFY", "DO", "SET", "RESET", "GRANT", "REVOKE", "BEGIN", "COMMIT",
    ];
    let mut in_fence = false;
    let mut found = Vec::new();
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim();
        // the same fences as sql_blocks: any ``` line opens one, only a bare ``` closes it
        if (!in_fence && trimmed.starts_with("```")) || (in_fence && trimmed == "```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence || !line.starts_with("    ") {
            continue;
        }
        let first_word = line
            .split(|c: char| !c.is_ascii_alphabetic())
            .find(|w| !w.is_empty())
            .unwrap_or("");
        let text = line.trim_start();
        if STARTS.contains(&first_word) && text.starts_with(first_word) {
            found.push((index + 1, text.to_string()));
        }
    }
    found
}

fn readme() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => describe_db(db),
        None => e.to_string(),
    }
}

fn describe_db(db: &DbError) -> String {
    let mut text = format!(
        "{}: {} (SQLSTATE {})",
        db.severity(),
        db.message(),
        db.code().code()
    );
    if let Some(detail) = db.detail() {
        text.push_str(&format!("\nDETAIL: {detail}"));
    }
    if let Some(hint) = db.hint() {
        text.push_str(&format!("\nHINT: {hint}"));
    }
    text
}

/// Waits (up to 30 s) for at least one notification, then takes whatever else is buffered.
fn notifications_received(client: &mut Client) -> Vec<Notification> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut received = Vec::new();
    while received.is_empty() {
        assert!(
            Instant::now() < deadline,
            "no notification within 30 s of the stream example's collect"
        );
        let mut notifications = client.notifications();
        let mut pending = notifications.timeout_iter(Duration::from_millis(200));
        while let Some(n) = pending.next().unwrap() {
            received.push(n);
        }
    }
    let mut notifications = client.notifications();
    let mut buffered = notifications.iter();
    while let Some(n) = buffered.next().unwrap() {
        received.push(n);
    }
    received
}

#[test]
fn readme_examples_run_as_written_in_order() {
    let readme = readme();
    let blocks = sql_blocks(&readme).unwrap_or_else(|e| panic!("README.md: {e}"));
    assert!(
        blocks.len() >= MIN_BLOCKS,
        "README.md has {} ```sql/```sql-error blocks, expected at least {MIN_BLOCKS}",
        blocks.len()
    );

    // one session, in order, as a reader pasting them into psql would
    let mut client = common::server().fresh_db("readme_examples");
    for (index, block) in blocks.iter().enumerate() {
        let number = index + 1;
        let what = format!(
            "README block {number} (line {}, `{}`)",
            block.line,
            block.first_line()
        );
        match (block.kind, client.batch_execute(&block.sql)) {
            (Kind::Sql, Ok(())) => {}
            (Kind::Sql, Err(e)) => panic!("{what} failed:\n{}", describe(&e)),
            (Kind::SqlError, Ok(())) => panic!("{what} is a ```sql-error block but ran"),
            (Kind::SqlError, Err(e)) => {
                let db = e
                    .as_db_error()
                    .unwrap_or_else(|| panic!("{what} failed, but not in the database: {e}"));
                let code = format!("SQLSTATE {}", db.code().code());
                assert!(
                    block.sql.contains(&code),
                    "{what} should fail with the SQLSTATE it shows, but failed with:\n{}",
                    describe_db(db)
                );
            }
        }
    }

    // Using it: the example events made the typed columns the later examples filter on
    for (property, expected) in [
        ("url", "text"),
        ("price", "double precision"),
        ("country", "text"),
    ] {
        let row = client
            .query_one(
                "SELECT type FROM beacon.fields
                  WHERE project = 'shop' AND collection = 'pageview' AND property = $1",
                &[&property],
            )
            .unwrap_or_else(|e| panic!("field {property}: {}", describe(&e)));
        assert_eq!(row.get::<_, String>(0), expected, "type of {property}");
    }

    // Event streams: the subscription made in this session received the event collected
    // after it, and only that one (the /cart event matches too but came before)
    assert!(
        readme.contains(STREAM_EVENT),
        "README no longer shows {STREAM_EVENT}"
    );
    let channel: String = client
        .query_one(
            "SELECT channel FROM beacon.subscriptions
              WHERE project = 'shop' AND collection = 'pageview'",
            &[],
        )
        .unwrap_or_else(|e| panic!("the stream example's subscription: {}", describe(&e)))
        .get(0);
    let received = notifications_received(&mut client);
    let summary: Vec<(String, String)> = received
        .iter()
        .map(|n| (n.channel().to_string(), n.payload().to_string()))
        .collect();
    assert_eq!(received.len(), 1, "notifications: {summary:?}");
    assert_eq!(received[0].channel(), channel, "notifications: {summary:?}");
    let payload: Value = serde_json::from_str(received[0].payload())
        .unwrap_or_else(|e| panic!("payload {}: {e}", received[0].payload()));
    assert_eq!(payload["collection"], "pageview", "{payload}");
    let event = &payload["event"];
    assert_eq!(event["_id"].as_i64(), Some(3), "{payload}");
    assert_eq!(event["url"], "/checkout", "{payload}");
    assert_eq!(event["country"], "AU", "{payload}");
    assert_eq!(event["price"].as_f64(), Some(30.0), "{payload}");

    // Continuous queries: the view equals its defining query run now, including the events
    // collected after it was created
    assert!(
        blocks.iter().any(|b| b.sql.contains(CQ_QUERY)),
        "README no longer defines views_per_url as {CQ_QUERY}"
    );
    let query = CQ_QUERY.replace("FROM pageview", "FROM shop.pageview");
    let row = client
        .query_one(
            &format!(
                "SELECT (SELECT count(*) FROM (TABLE shop.views_per_url EXCEPT ALL {query}) a)
                      + (SELECT count(*) FROM ({query} EXCEPT ALL TABLE shop.views_per_url) b),
                        (SELECT count(*) FROM shop.views_per_url),
                        (SELECT count(DISTINCT url) FROM shop.pageview),
                        (SELECT views FROM shop.views_per_url WHERE url = '/checkout')"
            ),
            &[],
        )
        .unwrap_or_else(|e| panic!("views_per_url against its query: {}", describe(&e)));
    assert_eq!(row.get::<_, i64>(0), 0, "rows where view and query differ");
    assert_eq!(
        row.get::<_, i64>(1),
        row.get::<_, i64>(2),
        "one row per url"
    );
    assert_eq!(row.get::<_, Option<i64>>(3), Some(1), "/checkout views");

    // Customers: set_user and increment_user made these columns and values
    let row = client
        .query_one(
            "SELECT plan, seats::text, logins::text FROM shop._users WHERE id = 'u1'",
            &[],
        )
        .unwrap_or_else(|e| panic!("user u1: {}", describe(&e)));
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, String>(1),
            row.get::<_, String>(2)
        ),
        ("pro".to_string(), "3".to_string(), "1".to_string())
    );

    // Queries for untrusted callers: the row the README shows is among the results
    assert!(
        readme.contains(&format!("-- {QUERY_ROW}")),
        "README no longer shows {QUERY_ROW}"
    );
    let row = client
        .query_one(
            "SELECT count(*) FROM beacon.query('shop',
                 'SELECT url, count(*) FROM pageview GROUP BY url', 1000) AS r
              WHERE r = $1::text::jsonb",
            &[&QUERY_ROW],
        )
        .unwrap_or_else(|e| panic!("beacon.query: {}", describe(&e)));
    assert_eq!(row.get::<_, i64>(0), 1, "rows equal to {QUERY_ROW}");
}

#[test]
fn readme_sql_examples_are_all_fenced() {
    let readme = readme();
    let unfenced = unfenced_sql(&readme);
    assert!(
        unfenced.is_empty(),
        "SQL in indented blocks, which the README test does not run (fence them as ```sql): \
         {unfenced:?}"
    );
    let blocks = sql_blocks(&readme).unwrap_or_else(|e| panic!("README.md: {e}"));
    assert!(blocks.len() >= MIN_BLOCKS, "{} blocks", blocks.len());
}

#[test]
fn sql_blocks_are_extracted_in_order_with_their_kind_and_line() {
    let markdown = "\
# Title

    SELECT 'indented, not run';

```sql
SELECT 1;
SELECT '```';
```

```sh
psql -c 'SELECT 2'
```sql
```

  ```sql-error
  SELECT 1/0;  -- SQLSTATE 22012
  ```
```sql
-- a comment first
DO $$ BEGIN NULL; END $$;
```
";
    let blocks = sql_blocks(markdown).unwrap();
    assert_eq!(
        blocks,
        vec![
            Block {
                kind: Kind::Sql,
                line: 6,
                sql: "SELECT 1;\nSELECT '```';".into()
            },
            Block {
                kind: Kind::SqlError,
                line: 16,
                sql: "  SELECT 1/0;  -- SQLSTATE 22012".into()
            },
            Block {
                kind: Kind::Sql,
                line: 19,
                sql: "-- a comment first\nDO $$ BEGIN NULL; END $$;".into()
            },
        ]
    );
    assert_eq!(blocks[2].first_line(), "-- a comment first");
    assert_eq!(
        unfenced_sql(markdown),
        vec![(3, "SELECT 'indented, not run';".into())]
    );

    assert!(sql_blocks("```sql\nSELECT 1;\n")
        .unwrap_err()
        .contains("line 1"));
    assert!(sql_blocks("```sql\n\n```\n").unwrap_err().contains("empty"));
    assert_eq!(sql_blocks("no code here\n").unwrap(), vec![]);
}
