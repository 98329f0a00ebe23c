//! Class 3: literals re-printed unsafely. Continuous-query, materialized-view, filter and
//! `beacon.query` texts whose string literals, escape strings, dollar quotes or comments
//! read differently once pasted into generated SQL, under `standard_conforming_strings`
//! on and off, each trying to smuggle statements after the one pg_beacon meant to run:
//! `SELECT nextval(<canary sequence>)` (a trace that survives a rollback) and
//! `CREATE ROLE atk_pwned_<tag>`.

use crate::common::attack::*;
use crate::common::server;

/// The smuggled statements (no single quote in them, so they survive any quoting).
fn payload(canary: &Canary) -> String {
    let oid: u32 = server()
        .connect(DB)
        .query_one(
            &format!("SELECT 'canary.{}'::regclass::oid", canary.tag),
            &[],
        )
        .unwrap()
        .get(0);
    format!(
        "SELECT pg_catalog.nextval({oid}::pg_catalog.regclass);CREATE ROLE atk_pwned_{}",
        canary.tag
    )
}

/// Control: the smuggled statements leave both traces when the superuser runs them, and
/// are refused when the attacker runs them directly.
fn control(attacker: &str) {
    let canary = Canary::new("lit_control");
    let sql = payload(&canary);
    Session::connect(attacker)
        .run(&sql)
        .assert_refused(&["42501"], "payload as attacker");
    assert!(!role_exists("atk_pwned_lit_control"));
    Session::connect("postgres").ok(&sql);
    assert!(canary.traces() > 0 && role_exists("atk_pwned_lit_control"));
    drop_role_if_exists("atk_pwned_lit_control");
    canary.reset();
}

const CQ_TEXTS: &[&str] = &[
    r"SELECT url, count(*) AS n FROM {src} WHERE url <> E'\';{X};--' GROUP BY url",
    r"SELECT url, count(*) AS n FROM {src} WHERE url <> '\' OR url = ') GROUP BY url;{X};--' GROUP BY url",
    r"SELECT url, count(*) AS n FROM {src} WHERE url <> $$\$$ OR url = ') GROUP BY url;{X};--' GROUP BY url",
    r"SELECT url, count(*) AS n FROM {src} /* \' ;{X};-- */ GROUP BY url",
    r"SELECT url, count(*) AS n FROM {src} WHERE url <> E'\\' OR url = E'\\'';{X};--' GROUP BY url",
    r"SELECT url, count(*) AS n FROM {src} WHERE url <> $t$\$t$ AND url <> E'\';{X};--' GROUP BY url",
    r"SELECT url, count(*) AS n FROM {src} WHERE url <> '\'') GROUP BY url;{X};--' GROUP BY url",
];

const QUERY_TEXTS: &[&str] = &[
    r"SELECT '\' AS a, ' AS b WITH DATA;{X};--' AS c",
    r"SELECT E'\';{X};--' AS a",
    r"SELECT $$\$$ AS a, ' WITH DATA;{X};--' AS b",
    r"SELECT 1 AS a /* \' ;{X};-- */",
    r"SELECT count(*) AS n FROM {src} WHERE url <> '\' OR url = ') WITH DATA;{X};--'",
    r"SELECT U&'\005C' AS a, ' WITH DATA;{X};--' AS b",
    r"SELECT '\' || ' AS a WITH DATA;{X};--' AS c",
    r"SELECT '\'' AS a WITH DATA;{X};--' AS b",
];

const FILTER_TEXTS: &[&str] = &[
    r"url = '\' OR url = ') LIMIT 0;{X};--'",
    r"url = E'\';{X};--'",
    r"url = $$\$$ OR url = ') LIMIT 0;{X};--'",
    r"url = 'x' /* \' ;{X};-- */",
    r"url = U&'\005C' OR url = ') LIMIT 0;{X};--'",
    r"url IN ('\', ') LIMIT 0;{X};--')",
    r"url = '\'') LIMIT 0;{X};--'",
];

const SCS: [&str; 2] = ["on", "off"];

/// One smuggling attempt: `surface` builds the call from the text.
fn attempt(
    role: &str,
    tag: &str,
    text: &str,
    src: &str,
    scs: &str,
    call: impl Fn(&str) -> String,
    findings: &mut Vec<String>,
) -> Canary {
    let canary = Canary::new(tag);
    let text = text.replace("{X}", &payload(&canary)).replace("{src}", src);
    let mut attacker = Session::connect(role);
    attacker.ok(&format!(
        "SET standard_conforming_strings = {scs}; SET escape_string_warning = off"
    ));
    let before = attacker.state();
    let sql = call(&text);
    let outcome = attacker.run(&sql);
    if canary.traces() > 0 || role_exists(&format!("atk_pwned_{tag}")) {
        findings.push(format!(
            "scs={scs}: {sql}\n    -> smuggled statements ran as the owner ({:?})",
            outcome.error
        ));
    }
    if attacker.state() != before {
        findings.push(format!("scs={scs}: {sql}\n    -> session changed"));
    }
    assert_nothing_leaked(&outcome, false, &sql);
    drop_role_if_exists(&format!("atk_pwned_{tag}"));
    canary
}

fn source(name: &str) -> String {
    server()
        .connect(DB)
        .batch_execute(&format!(
            r#"SELECT beacon.collect('alpha', '{name}', '{{"url": "/a", "n": 1}}')"#
        ))
        .unwrap();
    name.to_string()
}

#[test]
fn attacks_literals_in_continuous_queries() {
    let _turn = turn();
    control("boss");
    let src = source("lit_cq_src");
    let mut findings = Vec::new();
    for (i, text) in CQ_TEXTS.iter().enumerate() {
        for scs in SCS {
            let name = format!("lit_cq_{i}_{scs}");
            attempt(
                "boss",
                &name,
                text,
                &src,
                scs,
                |t| {
                    format!(
                        "SELECT beacon.create_continuous_query('alpha', '{name}', {})",
                        dq(t)
                    )
                },
                &mut findings,
            );
        }
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}

#[test]
fn attacks_literals_in_materialized_views() {
    let _turn = turn();
    control("boss");
    let src = source("lit_mv_src");
    let mut findings = Vec::new();
    for (i, text) in QUERY_TEXTS.iter().enumerate() {
        for scs in SCS {
            let name = format!("lit_mv_{i}_{scs}");
            attempt(
                "boss",
                &name,
                text,
                &src,
                scs,
                |t| {
                    format!(
                        "SELECT beacon.create_materialized_view('alpha', '{name}', {}, '1 hour');
                     SELECT beacon.refresh_materialized_view('alpha', '{name}')",
                        dq(t)
                    )
                },
                &mut findings,
            );
        }
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}

#[test]
fn attacks_literals_in_queries() {
    let _turn = turn();
    control("reader");
    let src = source("lit_q_src");
    let mut findings = Vec::new();
    for (i, text) in QUERY_TEXTS.iter().enumerate() {
        for scs in SCS {
            attempt(
                "reader",
                &format!("lit_q_{i}_{scs}"),
                text,
                &src,
                scs,
                |t| format!("SELECT * FROM beacon.query('alpha', {})", dq(t)),
                &mut findings,
            );
        }
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}

/// Filters run twice: checked in the subscriber's session, then pasted into the trigger
/// that runs in every writer's session, whose own standard_conforming_strings applies.
#[test]
fn attacks_literals_in_filters_and_the_writers_that_run_them() {
    let _turn = turn();
    control("reader");
    control("writer");
    let mut findings = Vec::new();
    for (i, text) in FILTER_TEXTS.iter().enumerate() {
        for scs in SCS {
            let tag = format!("lit_f_{i}_{scs}");
            let src = source(&tag);
            let canary = attempt(
                "reader",
                &tag,
                text,
                &src,
                scs,
                |t| {
                    format!(
                        "SELECT beacon.subscribe('alpha', '{src}', {}, false)",
                        dq(t)
                    )
                },
                &mut findings,
            );
            // every writer setting must store the event, and run nothing smuggled
            for writer_scs in SCS {
                let mut writer = Session::connect("writer");
                let outcome = writer.run(&format!(
                    "SET standard_conforming_strings = {writer_scs}; SET escape_string_warning = off;
                     SELECT beacon.collect('alpha', '{src}', '{{\"url\": \"/w\"}}')"
                ));
                if let Some(error) = &outcome.error {
                    findings.push(format!(
                        "filter {text} (scs={scs}): a writer with scs={writer_scs} failed: {error:?}"
                    ));
                }
                if canary.traces() > 0 || role_exists(&format!("atk_pwned_{tag}")) {
                    findings.push(format!(
                        "filter {text} (scs={scs}): a writer with scs={writer_scs} ran the smuggled statements"
                    ));
                    drop_role_if_exists(&format!("atk_pwned_{tag}"));
                    canary.reset();
                }
            }
        }
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}

/// The COMMENT ON VIEW path with an honest query: quotes and backslashes in the text must
/// be stored verbatim, whatever the session's standard_conforming_strings.
#[test]
fn attacks_literals_continuous_query_comment_keeps_the_text_verbatim() {
    let _turn = turn();
    let src = source("lit_comment_src");
    let texts = [
        (
            "off",
            format!(
                r"SELECT url, count(*) AS n FROM {src} WHERE url <> E'it\'s a \\ backslash' AND url <> 'it''s' GROUP BY url"
            ),
        ),
        (
            "on",
            format!(
                r"SELECT url, count(*) AS n FROM {src} WHERE url <> E'it\'s a \\ backslash' AND url <> 'it''s' GROUP BY url"
            ),
        ),
        (
            "on",
            format!(
                r"SELECT url, count(*) AS n FROM {src} WHERE url <> '\' AND url <> '\\''' GROUP BY url"
            ),
        ),
        (
            "off",
            format!(r"SELECT url, count(*) AS n FROM {src} WHERE url <> $$\'$$ GROUP BY url"),
        ),
    ];
    let mut findings = Vec::new();
    for (i, (scs, text)) in texts.iter().enumerate() {
        let name = format!("lit_comment_{i}");
        let mut boss = Session::connect("boss");
        let outcome = boss.run(&format!(
            "SET standard_conforming_strings = {scs}; SET escape_string_warning = off;
             SELECT beacon.create_continuous_query('alpha', '{name}', {})",
            dq(text)
        ));
        if let Some(error) = outcome.error {
            findings.push(format!("scs={scs}: {text}\n    -> refused: {error:?}"));
            continue;
        }
        let comment = Session::connect("postgres").value(&format!(
            "SELECT obj_description('alpha.{name}'::regclass, 'pg_class')"
        ));
        if !comment.contains(text.as_str()) {
            findings.push(format!("scs={scs}: {text}\n    -> comment is {comment:?}"));
        }
    }
    assert!(findings.is_empty(), "{}", findings.join("\n"));
}
