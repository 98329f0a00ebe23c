//! The analysis functions against deliberately simple per-user oracles written here, on
//! generated events: ties in time, repeated steps, steps out of order, events at the
//! window's edge, users without events or profiles, a DST change in the time zone.
//! Also: who may call them.

mod common;

use common::{server, Rng};
use postgres::Client;
use std::collections::{BTreeMap, BTreeSet};

const ZONE: &str = "Europe/Paris";
const COLLECTIONS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
struct Event {
    collection: usize,
    id: i64,
    user: Option<String>,
    /// Microseconds since the epoch.
    time: i64,
    price: i64,
    country: String,
    /// The local (ZONE) calendar day, as days since 1970-01-01, and the local hour.
    local_day: i64,
    local_hour: i64,
}

const MINUTE: i64 = 60_000_000;
const DAY: i64 = 24 * 60 * MINUTE;
/// 2024-03-28 00:00 UTC: the data spans Paris's change to summer time on 2024-03-31.
const BASE: i64 = 1_711_584_000_000_000;

fn generate(client: &mut Client, project: &str, seed: u64) -> Vec<Event> {
    let mut rng = Rng::new(seed);
    client
        .batch_execute(&format!("SELECT beacon.create_project('{project}')"))
        .unwrap();
    for c in COLLECTIONS {
        client
            .batch_execute(&format!(
                "SELECT beacon.define_collection('{project}', '{c}', '{{\"price\": \"bigint\", \"country\": \"text\"}}')"
            ))
            .unwrap();
    }
    let mut last_time = BASE;
    for _ in 0..500 {
        let c = COLLECTIONS[rng.below(3) as usize];
        let user = match rng.below(25) {
            0 => "NULL".to_string(),
            u => format!("'u{u}'"),
        };
        // ties on purpose, and times on whole minutes so window edges are hit exactly
        let time = if rng.below(6) == 0 {
            last_time
        } else {
            BASE + rng.below(8 * 24 * 60) as i64 * MINUTE
        };
        last_time = time;
        let price = rng.below(100) as i64;
        let country = ["fr", "de", "nz"][rng.below(3) as usize];
        client
            .batch_execute(&format!(
                "INSERT INTO {project}.{c} (_user, _time, price, country)
                 VALUES ({user}, to_timestamp({time} / 1e6), {price}, '{country}')"
            ))
            .unwrap();
    }
    // profiles for some users only
    for u in 1..25 {
        if u % 3 == 0 {
            client
                .batch_execute(&format!(
                    "SELECT beacon.set_user('{project}', 'u{u}', '{{\"plan\": \"p{}\"}}')",
                    u % 2
                ))
                .unwrap();
        }
    }
    let mut events = Vec::new();
    for (i, c) in COLLECTIONS.iter().enumerate() {
        for row in client
            .query(
                &format!(
                    "SELECT _id, _user, (extract(epoch FROM _time) * 1e6)::bigint, price, country,
                            ((_time AT TIME ZONE '{ZONE}')::date - DATE '1970-01-01')::bigint,
                            extract(hour FROM _time AT TIME ZONE '{ZONE}')::bigint
                       FROM {project}.{c}"
                ),
                &[],
            )
            .unwrap()
        {
            events.push(Event {
                collection: i,
                id: row.get(0),
                user: row.get(1),
                time: row.get(2),
                price: row.get(3),
                country: row.get(4),
                local_day: row.get(5),
                local_hour: row.get(6),
            });
        }
    }
    events
}

struct Step {
    collection: usize,
    min_price: i64,
}

fn step_json(steps: &[Step]) -> String {
    let parts: Vec<String> = steps
        .iter()
        .map(|s| {
            format!(
                "{{\"collection\": \"{}\", \"where\": \"price >= {}\"}}",
                COLLECTIONS[s.collection], s.min_price
            )
        })
        .collect();
    format!("[{}]", parts.join(", "))
}

/// Whether some events of steps k.. follow `previous` in order, within the window of the
/// entry: an exhaustive search, not the greedy choice the SQL makes.
fn completes(
    events: &[&Event],
    steps: &[Step],
    previous: &Event,
    entry_time: i64,
    window: i64,
) -> bool {
    let Some((step, rest)) = steps.split_first() else {
        return true;
    };
    events.iter().any(|e| {
        e.collection == step.collection
            && e.price >= step.min_price
            && (e.time > previous.time
                || (e.time == previous.time
                    && (e.collection != previous.collection || e.id > previous.id)))
            && e.time - entry_time <= window
            && completes(events, rest, e, entry_time, window)
    })
}

/// Users at each step per breakdown (country of the entering event).
fn funnel_oracle(
    all: &[Event],
    steps: &[Step],
    window: i64,
    from: i64,
    to: i64,
) -> BTreeMap<(String, usize), i64> {
    let mut by_user: BTreeMap<&str, Vec<&Event>> = BTreeMap::new();
    for e in all {
        if let Some(u) = &e.user {
            by_user.entry(u).or_default().push(e);
        }
    }
    let mut result = BTreeMap::new();
    for events in by_user.values() {
        let entry = events
            .iter()
            .filter(|e| {
                e.collection == steps[0].collection
                    && e.price >= steps[0].min_price
                    && e.time >= from
                    && e.time < to
            })
            .min_by_key(|e| (e.time, e.id));
        let Some(entry) = entry else { continue };
        for n in 1..=steps.len() {
            if completes(events, &steps[1..n], entry, entry.time, window) {
                *result.entry((entry.country.clone(), n)).or_insert(0) += 1;
            }
        }
    }
    result
}

fn timestamp(micros: i64) -> String {
    format!("to_timestamp({micros} / 1e6)")
}

#[test]
fn analysis_funnels_match_an_exhaustive_oracle() {
    let mut client = server().fresh_db("analysis_funnel");
    for seed in [1u64, 2, 3] {
        let project = format!("f{seed}");
        let events = generate(&mut client, &project, seed);
        let shapes: Vec<(Vec<Step>, i64)> = vec![
            (
                vec![
                    Step {
                        collection: 0,
                        min_price: 20,
                    },
                    Step {
                        collection: 1,
                        min_price: 0,
                    },
                    Step {
                        collection: 0,
                        min_price: 0,
                    },
                ],
                2 * DAY,
            ),
            (
                vec![
                    Step {
                        collection: 2,
                        min_price: 0,
                    },
                    Step {
                        collection: 2,
                        min_price: 50,
                    },
                ],
                DAY / 2,
            ),
            (
                vec![
                    Step {
                        collection: 1,
                        min_price: 0,
                    },
                    Step {
                        collection: 0,
                        min_price: 0,
                    },
                    Step {
                        collection: 2,
                        min_price: 0,
                    },
                    Step {
                        collection: 1,
                        min_price: 10,
                    },
                ],
                3 * DAY,
            ),
        ];
        for (steps, window) in &shapes {
            let (from, to) = (BASE + DAY, BASE + 6 * DAY);
            let expected = funnel_oracle(&events, steps, *window, from, to);
            let rows = client
                .query(
                    &format!(
                        "SELECT breakdown, step, users FROM beacon.funnel('{project}', $1::text::jsonb,
                           make_interval(secs => {} / 1e6), {}, {}, 'country', 'UTC')",
                        window,
                        timestamp(from),
                        timestamp(to)
                    ),
                    &[&step_json(steps)],
                )
                .unwrap();
            let mut got = BTreeMap::new();
            for row in rows {
                let users: i64 = row.get(2);
                if users > 0 {
                    let b: Option<String> = row.get(0);
                    let step: i32 = row.get(1);
                    got.insert((b.unwrap_or_default(), step as usize), users);
                }
            }
            assert_eq!(got, expected, "seed {seed}, steps {}", step_json(steps));
        }
    }
}

fn month_of_day(day: i64) -> i64 {
    // days since 1970-01-01 to year*12 + month (civil calendar, Howard Hinnant's method)
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    year * 12 + month
}

/// Period index of a local day: days, ISO weeks (1970-01-01 was a Thursday), months.
fn period_index(period: &str, day: i64) -> i64 {
    match period {
        "day" => day,
        "week" => (day + 3).div_euclid(7),
        _ => month_of_day(day),
    }
}

#[test]
fn analysis_retention_matches_a_per_user_oracle() {
    let mut client = server().fresh_db("analysis_retention");
    for seed in [4u64, 5] {
        let project = format!("r{seed}");
        let events = generate(&mut client, &project, seed);
        let (from, to) = (BASE, BASE + 8 * DAY);
        for (period, first_c, first_min, back_c) in
            [("day", 0, 30, 1), ("week", 1, 0, 1), ("month", 2, 0, 0)]
        {
            // oracle: cohort and periods per user
            let mut expected: BTreeMap<(i64, i64), BTreeSet<String>> = BTreeMap::new();
            let mut sizes: BTreeMap<i64, i64> = BTreeMap::new();
            let users: BTreeSet<&String> = events.iter().filter_map(|e| e.user.as_ref()).collect();
            for u in users {
                let first = events
                    .iter()
                    .filter(|e| {
                        e.user.as_ref() == Some(u)
                            && e.collection == first_c
                            && e.price >= first_min
                            && e.time >= from
                            && e.time < to
                    })
                    .min_by_key(|e| (e.time, e.id));
                let Some(first) = first else { continue };
                let cohort = period_index(period, first.local_day);
                *sizes.entry(cohort).or_insert(0) += 1;
                for e in &events {
                    if e.user.as_ref() == Some(u)
                        && e.collection == back_c
                        && e.time >= first.time
                        && e.time < to
                    {
                        let n = period_index(period, e.local_day) - cohort;
                        expected.entry((cohort, n)).or_default().insert(u.clone());
                    }
                }
            }
            let rows = client
                .query(
                    &format!(
                        "SELECT cohort - DATE '1970-01-01', period, users, cohort_size
                           FROM beacon.retention('{project}',
                             '{{\"collection\": \"{}\", \"where\": \"price >= {first_min}\"}}',
                             '{{\"collection\": \"{}\"}}', '{period}', {}, {}, NULL, '{ZONE}')",
                        COLLECTIONS[first_c],
                        COLLECTIONS[back_c],
                        timestamp(from),
                        timestamp(to)
                    ),
                    &[],
                )
                .unwrap();
            let mut got_sizes = BTreeMap::new();
            let mut got = BTreeMap::new();
            for row in rows {
                let cohort_day: i32 = row.get(0);
                let cohort = period_index(period, i64::from(cohort_day));
                let n: i32 = row.get(1);
                let users: i64 = row.get(2);
                got_sizes.insert(cohort, row.get::<_, i64>(3));
                if users > 0 {
                    got.insert((cohort, i64::from(n)), users);
                }
            }
            let expected_counts: BTreeMap<(i64, i64), i64> = expected
                .into_iter()
                .map(|(k, v)| (k, v.len() as i64))
                .collect();
            assert_eq!(got_sizes, sizes, "seed {seed}, {period}: cohort sizes");
            assert_eq!(
                got, expected_counts,
                "seed {seed}, {period}: returning users"
            );
        }
    }
}

#[test]
fn analysis_segmentation_matches_a_per_event_oracle() {
    let mut client = server().fresh_db("analysis_segmentation");
    let events = generate(&mut client, "s1", 6);
    let (from, to) = (BASE + DAY / 3, BASE + 7 * DAY);
    let in_range: Vec<&Event> = events
        .iter()
        .filter(|e| e.collection == 1 && e.time >= from && e.time < to && e.price < 80)
        .collect();
    for bucket in ["hour", "day"] {
        let key = |e: &Event| match bucket {
            "hour" => e.local_day * 24 + e.local_hour,
            _ => e.local_day,
        };
        let mut sums: BTreeMap<(i64, String), i64> = BTreeMap::new();
        let mut users: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
        for e in &in_range {
            *sums.entry((key(e), e.country.clone())).or_insert(0) += e.price;
            if let Some(u) = &e.user {
                users.entry(key(e)).or_default().insert(u.clone());
            }
        }
        let local = |column: &str| {
            format!(
                "((extract(epoch FROM {column} AT TIME ZONE '{ZONE}') / 3600)::bigint / {})",
                if bucket == "hour" { 1 } else { 24 }
            )
        };
        let rows = client
            .query(
                &format!(
                    "SELECT {}, breakdown, value::bigint FROM beacon.segmentation('s1', 'b',
                       '{{\"aggregate\": \"sum\", \"property\": \"price\"}}', '{bucket}', {}, {},
                       'country', 'price < 80', '{ZONE}')",
                    local("bucket"),
                    timestamp(from),
                    timestamp(to)
                ),
                &[],
            )
            .unwrap();
        let got: BTreeMap<(i64, String), i64> = rows
            .iter()
            .map(|r| ((r.get(0), r.get::<_, String>(1)), r.get(2)))
            .collect();
        assert_eq!(got, sums, "{bucket}: sums by country");
        let rows = client
            .query(
                &format!(
                    "SELECT {}, value::bigint FROM beacon.segmentation('s1', 'b', '\"users\"',
                       '{bucket}', {}, {}, NULL, 'price < 80', '{ZONE}')",
                    local("bucket"),
                    timestamp(from),
                    timestamp(to)
                ),
                &[],
            )
            .unwrap();
        let got: BTreeMap<i64, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        let expected: BTreeMap<i64, i64> = users
            .into_iter()
            .map(|(k, v)| (k, v.len() as i64))
            .filter(|(_, n)| *n > 0)
            .collect();
        // buckets whose events all lack a user have 0 distinct users
        let got: BTreeMap<i64, i64> = got.into_iter().filter(|(_, n)| *n > 0).collect();
        assert_eq!(got, expected, "{bucket}: distinct users");
    }
}

#[test]
fn analysis_timelines_page_through_every_event_once() {
    let mut client = server().fresh_db("analysis_timeline");
    let events = generate(&mut client, "t1", 7);
    for user in ["u1", "u7", "u13"] {
        let mut expected: Vec<(i64, String, i64)> = events
            .iter()
            .filter(|e| e.user.as_deref() == Some(user))
            .map(|e| (e.time, COLLECTIONS[e.collection].to_string(), e.id))
            .collect();
        expected.sort();
        expected.reverse();
        let mut got = Vec::new();
        let mut before: Option<String> = None;
        loop {
            let rows = client
                .query(
                    "SELECT (extract(epoch FROM time) * 1e6)::bigint, collection, id, cursor
                       FROM beacon.user_timeline('t1', $1, NULL, NULL, 3, $2)",
                    &[&user, &before],
                )
                .unwrap();
            if rows.is_empty() {
                break;
            }
            for r in &rows {
                got.push((r.get(0), r.get(1), r.get(2)));
            }
            before = Some(rows.last().unwrap().get(3));
        }
        assert_eq!(got, expected, "{user}");
    }
}

#[test]
fn analysis_needs_read_access_and_checks_conditions() {
    let mut client = server().fresh_db("analysis_access");
    generate(&mut client, "x1", 8);
    client
        .batch_execute(
            "DROP ROLE IF EXISTS analysis_outsider; DROP ROLE IF EXISTS analysis_reader;
             CREATE ROLE analysis_outsider LOGIN; CREATE ROLE analysis_reader LOGIN;
             SELECT beacon.grant('x1', 'analysis_reader', 'read');
             CREATE TABLE public.analysis_marker (n int); GRANT ALL ON public.analysis_marker TO PUBLIC;",
        )
        .unwrap();
    let call = "SELECT count(*) FROM beacon.segmentation('x1', 'a', '\"count\"', 'day', '-infinity', 'infinity')";
    let mut outsider = server().connect_as("analysis_access", "analysis_outsider");
    let err = outsider.query_one(call, &[]).unwrap_err();
    assert_eq!(err.code().unwrap().code(), "42501");
    let mut reader = server().connect_as("analysis_access", "analysis_reader");
    let n: i64 = reader.query_one(call, &[]).unwrap().get(0);
    assert!(n > 0);
    // conditions and names an attacker might try: each refused, nothing written
    for (sql, code) in [
        (
            "SELECT * FROM beacon.segmentation('x1', 'a', '\"count\"', 'day', now(), now(), NULL,
               'price > 0) UNION SELECT 1 --')",
            "42601",
        ),
        (
            "SELECT * FROM beacon.segmentation('x1', 'a', '\"count\"', 'day', now(), now(), NULL,
               '(SELECT count(*) FROM public.analysis_marker) > 0')",
            "42501",
        ),
        (
            "SELECT * FROM beacon.segmentation('x1', 'a', '\"count\"', 'day', now(), now(), NULL,
               '(country).pg_read_file > ''''')",
            "42501",
        ),
        (
            "SELECT * FROM beacon.funnel('x1', '[{\"collection\": \"a\\\" ; DROP TABLE x1.a; --\"}]',
               '1 day', now(), now())",
            "42P01",
        ),
        (
            "SELECT * FROM beacon.segmentation('x1', 'a', '{\"aggregate\": \"sum\", \"property\": \"price\\\"); --\"}',
               'day', now(), now())",
            "42704",
        ),
        (
            "SELECT * FROM beacon.user_timeline('x1', 'u1'' OR ''1''=''1')",
            "",
        ),
    ] {
        let result = reader.query(sql, &[]);
        match (result, code) {
            (Ok(rows), "") => assert!(rows.is_empty(), "{sql}: a quoted user id matches no one"),
            (Err(e), code) => assert_eq!(e.code().unwrap().code(), code, "{sql}: {e:?}"),
            (Ok(_), code) => panic!("{sql}: accepted, expected {code}"),
        }
    }
    let rows: i64 = client
        .query_one("SELECT count(*) FROM public.analysis_marker", &[])
        .unwrap()
        .get(0);
    assert_eq!(rows, 0);
    let exists: bool = client
        .query_one("SELECT to_regclass('x1.a') IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert!(exists);
}
