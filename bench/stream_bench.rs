//! Event-stream benchmark, one run on one server (see bench/streams.sh):
//!
//! 1. Stream latency with 1 and with 50 subscriptions on the collection: one writer sends
//!    RATE events/s for DURATION_S seconds (fewer if it cannot keep up: the phase is as long
//!    as DURATION_S either way) with `beacon.collect` in autocommit, one listener
//!    records when each event's notification arrives. Latency is measured from the moment
//!    the writer's call returned (its commit was acknowledged), and, as an upper bound that
//!    includes executing the insert, from the moment the call started.
//! 2. Write cost: 1,000-row INSERT statements into the collection with 0, 1 and 50
//!    subscriptions that match nothing, against a bare table of the same shape, median of
//!    ROUNDS rounds.
//!
//! Settings come from the environment: BEACON_BENCH_DSN, DURATION_S, RATE, ROUNDS, ROWS, and
//! WRITER_SYNCHRONOUS_COMMIT (the latency writer's synchronous_commit; the server's setting
//! when unset). One writer making one call at a time cannot outrun its calls: with
//! synchronous commit each waits for the WAL flush, and on a disk whose fdatasync takes
//! ~4 ms that caps it near 250 events/s, not 1,000. The achieved rate is reported either way.

use postgres::fallible_iterator::FallibleIterator;
use postgres::types::Type;
use postgres::{Client, NoTls};
use serde_json::{json, Value};
use std::error::Error;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

type Res<T> = Result<T, Box<dyn Error + Send + Sync>>;

const PROJECT: &str = "streambench";
const COLLECTION: &str = "streambench.pageview";
const BARE: &str = "public.stream_bench_bare";
const STATEMENT_ROWS: i64 = 1_000;
/// Sent before the clock starts, so that the measured events do not pay for planning and
/// for compiling the trigger function in a new session. Their `n` matches no filter.
const WARMUP_EVENTS: i64 = 100;
/// How many events the writer sent, while it does not know yet.
const WRITING: usize = usize::MAX;
/// How long the listener keeps waiting once the writer is done.
const GRACE: Duration = Duration::from_secs(10);
const TARGET_P99: Duration = Duration::from_millis(10);
const TARGET_WRITE_RATIO: f64 = 0.8;

struct Settings {
    dsn: String,
    duration_s: f64,
    rate: f64,
    rounds: usize,
    rows: i64,
    writer_synchronous_commit: Option<String>,
}

fn env_or<T: FromStr>(name: &str, default: T) -> Res<T> {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse()
            .map_err(|_| format!("{name}={text:?} is not a valid value").into()),
        Err(_) => Ok(default),
    }
}

impl Settings {
    fn from_env() -> Res<Settings> {
        let settings = Settings {
            dsn: env_or(
                "BEACON_BENCH_DSN",
                "host=127.0.0.1 port=55433 user=postgres dbname=beacon_stream_bench".to_string(),
            )?,
            duration_s: env_or("DURATION_S", 20.0)?,
            rate: env_or("RATE", 1_000.0)?,
            rounds: env_or("ROUNDS", 3)?,
            rows: env_or("ROWS", 200_000)?,
            writer_synchronous_commit: std::env::var("WRITER_SYNCHRONOUS_COMMIT").ok(),
        };
        if settings.rate <= 0.0 || settings.duration_s <= 0.0 || settings.rounds == 0 {
            return Err("RATE, DURATION_S and ROUNDS must be positive".into());
        }
        if settings.rows < STATEMENT_ROWS || settings.rows % STATEMENT_ROWS != 0 {
            return Err(format!("ROWS must be a positive multiple of {STATEMENT_ROWS}").into());
        }
        Ok(settings)
    }

    /// The most events the writer can send, all of them on schedule.
    fn events(&self) -> usize {
        (self.rate * self.duration_s).round() as usize
    }
}

fn setup(admin: &mut Client) -> Res<()> {
    admin.batch_execute(&format!(
        r#"SELECT beacon.drop_project('{PROJECT}') FROM beacon.projects WHERE name = '{PROJECT}';
           SELECT beacon.create_project('{PROJECT}');
           SELECT beacon.define_collection('{PROJECT}', 'pageview',
               '{{"url": "text", "price": "double precision", "n": "bigint"}}');
           DROP TABLE IF EXISTS {BARE};
           CREATE TABLE {BARE} (
               _id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
               _time timestamptz NOT NULL DEFAULT now(),
               _user text, n bigint, price double precision, url text);
           CREATE INDEX ON {BARE} USING brin (_time);"#
    ))?;
    Ok(())
}

/// Subscriptions are temporary (they end with `admin`'s session even if the run aborts),
/// and are ended explicitly between phases.
struct Subscriptions {
    channels: Vec<String>,
}

impl Subscriptions {
    fn add(&mut self, admin: &mut Client, filter: Option<&str>) -> Res<String> {
        let channel: String = admin
            .query_one(
                &format!("SELECT beacon.subscribe('{PROJECT}', 'pageview', $1, true)"),
                &[&filter],
            )?
            .get(0);
        self.channels.push(channel.clone());
        Ok(channel)
    }

    /// `count` subscriptions whose filters match none of the benchmark's events, whose
    /// sequence numbers are never below zero.
    fn add_non_matching(&mut self, admin: &mut Client, count: usize) -> Res<()> {
        for k in 1..=count {
            self.add(admin, Some(&format!("n = -{k}")))?;
        }
        Ok(())
    }

    fn remove_all(&mut self, admin: &mut Client) -> Res<()> {
        for channel in self.channels.drain(..) {
            admin.execute("SELECT beacon.unsubscribe($1)", &[&channel])?;
        }
        Ok(())
    }
}

fn collection_triggers(admin: &mut Client) -> Res<i64> {
    Ok(admin
        .query_one(
            "SELECT count(*) FROM pg_trigger WHERE tgrelid = $1::text::regclass AND NOT tgisinternal",
            &[&COLLECTION],
        )?
        .get(0))
}

// ---------------------------------------------------------------------------------------
// Stream latency

struct Sent {
    starts: Vec<Instant>,
    acks: Vec<Instant>,
    achieved_rate: f64,
    late: usize,
    synchronous_commit: String,
}

fn write_events(
    dsn: &str,
    events: usize,
    rate: f64,
    duration: Duration,
    synchronous_commit: Option<&str>,
) -> Res<Sent> {
    let mut client = Client::connect(dsn, NoTls)?;
    if let Some(value) = synchronous_commit {
        client.execute(
            "SELECT set_config('synchronous_commit', $1, false)",
            &[&value],
        )?;
    }
    let synchronous_commit: String = client.query_one("SHOW synchronous_commit", &[])?.get(0);
    let collect = client.prepare(&format!(
        "SELECT beacon.collect('{PROJECT}', 'pageview', $1::jsonb)"
    ))?;
    for w in 0..WARMUP_EVENTS {
        let event = json!({"url": "/warmup", "price": 1.5, "n": -1_000_000 - w});
        client.query_one(&collect, &[&event])?;
    }
    let mut starts = Vec::with_capacity(events);
    let mut acks = Vec::with_capacity(events);
    let mut late = 0;
    let t0 = Instant::now();
    for i in 0..events {
        let event = json!({"url": "/stream", "price": 9.5, "n": i});
        // an absolute schedule: a slow call delays the next event, not all later ones
        let due = t0 + Duration::from_secs_f64(i as f64 / rate);
        let now = Instant::now();
        if now - t0 >= duration {
            break;
        }
        if due > now {
            thread::sleep(due - now);
        } else if now - due > Duration::from_millis(1) {
            late += 1;
        }
        let start = Instant::now();
        client.query_one(&collect, &[&event])?;
        acks.push(Instant::now());
        starts.push(start);
    }
    let span = starts.last().map_or(0.0, |last| (*last - t0).as_secs_f64());
    Ok(Sent {
        achieved_rate: if span > 0.0 {
            (starts.len() - 1) as f64 / span
        } else {
            f64::NAN
        },
        starts,
        acks,
        late,
        synchronous_commit,
    })
}

struct Received {
    at: Vec<Option<Instant>>,
    duplicates: usize,
    unexpected: usize,
}

fn sequence_of(payload: &str) -> Res<Option<i64>> {
    let value: Value = serde_json::from_str(payload)?;
    Ok(value["event"]["n"].as_i64())
}

fn listen(
    dsn: &str,
    channel: &str,
    events: usize,
    ready: mpsc::Sender<()>,
    sent: Arc<AtomicUsize>,
) -> Res<Received> {
    let mut client = Client::connect(dsn, NoTls)?;
    client.batch_execute(&format!("LISTEN \"{channel}\""))?;
    ready.send(())?;
    let mut received = Received {
        at: vec![None; events],
        duplicates: 0,
        unexpected: 0,
    };
    let mut count = 0;
    let mut done_since: Option<Instant> = None;
    let mut notifications = client.notifications();
    'receiving: loop {
        let mut iter = notifications.timeout_iter(Duration::from_millis(100));
        while let Some(note) = iter.next()? {
            let at = Instant::now();
            let slot = match sequence_of(note.payload())? {
                Some(n) if note.channel() == channel && (0..events as i64).contains(&n) => {
                    &mut received.at[n as usize]
                }
                // warm-up events, or anything else
                _ => {
                    received.unexpected += usize::from(note.channel() != channel);
                    continue;
                }
            };
            if slot.is_some() {
                received.duplicates += 1;
            } else {
                *slot = Some(at);
                count += 1;
                if count >= sent.load(Ordering::Acquire) {
                    break 'receiving;
                }
            }
        }
        let sent = sent.load(Ordering::Acquire);
        if sent != WRITING
            && (count >= sent || done_since.get_or_insert_with(Instant::now).elapsed() > GRACE)
        {
            break;
        }
    }
    Ok(received)
}

struct Latency {
    subscriptions: usize,
    sent: usize,
    received: usize,
    duplicates: usize,
    unexpected: usize,
    achieved_rate: f64,
    late: usize,
    synchronous_commit: String,
    before_ack: usize,
    from_ack: Vec<Duration>,
    from_start: Vec<Duration>,
    call: Vec<Duration>,
}

fn stream_latency(
    settings: &Settings,
    admin: &mut Client,
    subscriptions: &mut Subscriptions,
    count: usize,
) -> Res<Latency> {
    let channel = subscriptions.add(admin, None)?;
    subscriptions.add_non_matching(admin, count - 1)?;
    let events = settings.events();
    println!(
        "\n-- stream latency, {count} subscription(s) (1 matching every event), {} events/s for {} s",
        thousands(settings.rate),
        settings.duration_s
    );

    let sent_count = Arc::new(AtomicUsize::new(WRITING));
    let (ready_tx, ready_rx) = mpsc::channel();
    let listener = {
        let dsn = settings.dsn.clone();
        let channel = channel.clone();
        let sent_count = Arc::clone(&sent_count);
        thread::spawn(move || listen(&dsn, &channel, events, ready_tx, sent_count))
    };
    if ready_rx.recv().is_err() {
        return Err(join(listener)
            .err()
            .unwrap_or_else(|| "listener stopped".into()));
    }
    let writer = {
        let dsn = settings.dsn.clone();
        let rate = settings.rate;
        let duration = Duration::from_secs_f64(settings.duration_s);
        let synchronous_commit = settings.writer_synchronous_commit.clone();
        thread::spawn(move || {
            write_events(&dsn, events, rate, duration, synchronous_commit.as_deref())
        })
    };
    let sent = join(writer);
    // set even when the writer failed, so that the listener stops waiting
    sent_count.store(
        sent.as_ref().map_or(0, |sent| sent.acks.len()),
        Ordering::Release,
    );
    let received = join(listener)?;
    let sent = sent?;
    subscriptions.remove_all(admin)?;

    let mut latency = Latency {
        subscriptions: count,
        sent: sent.acks.len(),
        received: 0,
        duplicates: received.duplicates,
        unexpected: received.unexpected,
        achieved_rate: sent.achieved_rate,
        late: sent.late,
        synchronous_commit: sent.synchronous_commit.clone(),
        before_ack: 0,
        from_ack: Vec::with_capacity(sent.acks.len()),
        from_start: Vec::with_capacity(sent.acks.len()),
        call: sent
            .acks
            .iter()
            .zip(&sent.starts)
            .map(|(ack, start)| *ack - *start)
            .collect(),
    };
    for (i, at) in received.at.iter().take(sent.acks.len()).enumerate() {
        let Some(at) = *at else { continue };
        latency.received += 1;
        // the commit's notification can overtake the reply to the writer's call
        if at < sent.acks[i] {
            latency.before_ack += 1;
        }
        latency
            .from_ack
            .push(at.saturating_duration_since(sent.acks[i]));
        latency
            .from_start
            .push(at.saturating_duration_since(sent.starts[i]));
    }
    latency.from_ack.sort();
    latency.from_start.sort();
    latency.call.sort();
    report_latency(&latency, settings.rate);
    Ok(latency)
}

fn join<T>(handle: thread::JoinHandle<Res<T>>) -> Res<T> {
    handle
        .join()
        .unwrap_or_else(|_| Err("a benchmark thread panicked".into()))
}

/// Nearest-rank percentile of sorted durations.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn distribution(sorted: &[Duration]) -> String {
    format!(
        "p50 {:>9}  p99 {:>9}  max {:>9}",
        ms(percentile(sorted, 50.0)),
        ms(percentile(sorted, 99.0)),
        ms(sorted.last().copied().unwrap_or_default())
    )
}

fn report_latency(l: &Latency, rate: f64) {
    println!(
        "writer (synchronous_commit = {}): {} events sent, achieved {:.1} events/s \
         ({} sent more than 1 ms behind schedule)",
        l.synchronous_commit,
        thousands(l.sent as f64),
        l.achieved_rate,
        l.late
    );
    if l.achieved_rate < 0.95 * rate {
        println!(
            "NOTE: the writer fell short of {} events/s: it makes one call at a time, and a call \
             takes {} (p50){}",
            thousands(rate),
            ms(percentile(&l.call, 50.0)),
            if l.synchronous_commit == "off" {
                ""
            } else {
                ", including the wait for the commit's WAL flush"
            }
        );
    }
    println!(
        "collect call (start → commit acknowledged):   {}",
        distribution(&l.call)
    );
    println!(
        "latency from commit acknowledged to receipt:  {}",
        distribution(&l.from_ack)
    );
    println!(
        "latency from call start to receipt:           {}",
        distribution(&l.from_start)
    );
    println!(
        "received {} of {} events; {} arrived before the writer saw its commit (counted as 0 ms); \
         {} duplicates; {} on other channels",
        thousands(l.received as f64),
        thousands(l.sent as f64),
        l.before_ack,
        l.duplicates,
        l.unexpected
    );
    if l.received != l.sent {
        println!(
            "FAIL: {} of {} events were never received with {} subscription(s)",
            l.sent - l.received,
            l.sent,
            l.subscriptions
        );
    }
    let over = l.from_ack.iter().filter(|d| **d > TARGET_P99).count();
    if over > 0 {
        println!(
            "{over} events took more than {} from acknowledgement",
            ms(TARGET_P99)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Write cost

#[derive(Clone, Copy, PartialEq)]
enum Target {
    Bare,
    Collection(usize),
}

impl Target {
    fn label(self) -> String {
        match self {
            Target::Bare => "bare table".into(),
            Target::Collection(k) => format!("{k} non-matching subscriptions"),
        }
    }
}

fn bulk_insert(admin: &mut Client, table: &str, rows: i64) -> Res<f64> {
    admin.batch_execute(&format!("TRUNCATE {table} RESTART IDENTITY; CHECKPOINT"))?;
    let insert = admin.prepare_typed(
        &format!(
            "INSERT INTO {table} (url, price, n) \
             SELECT '/p' || (g % 100), g % 50, g FROM generate_series($1, $2) g"
        ),
        &[Type::INT8, Type::INT8],
    )?;
    let started = Instant::now();
    for first in (1..=rows).step_by(STATEMENT_ROWS as usize) {
        let last = first + STATEMENT_ROWS - 1;
        admin.execute(&insert, &[&first, &last])?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stored: i64 = admin
        .query_one(&format!("SELECT count(*) FROM {table}"), &[])?
        .get(0);
    if stored != rows {
        return Err(format!("{table} holds {stored} rows after inserting {rows}").into());
    }
    Ok(rows as f64 / elapsed)
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[(sorted.len() - 1) / 2]
}

const TARGETS: [Target; 4] = [
    Target::Bare,
    Target::Collection(0),
    Target::Collection(1),
    Target::Collection(50),
];

/// Returns the median rows/s of each target, in the order of `TARGETS`.
fn write_cost(
    settings: &Settings,
    admin: &mut Client,
    subscriptions: &mut Subscriptions,
) -> Res<Vec<f64>> {
    println!(
        "\n-- write cost: {} rows as {} INSERT statements of {} rows, autocommit, {} round(s)",
        thousands(settings.rows as f64),
        settings.rows / STATEMENT_ROWS,
        STATEMENT_ROWS,
        settings.rounds
    );
    let mut rates = vec![Vec::new(); TARGETS.len()];
    for round in 1..=settings.rounds {
        let mut line = format!("round {round}:");
        for (t, target) in TARGETS.iter().enumerate() {
            let table = match *target {
                Target::Bare => BARE,
                Target::Collection(k) => {
                    subscriptions.remove_all(admin)?;
                    subscriptions.add_non_matching(admin, k)?;
                    let triggers = collection_triggers(admin)?;
                    if triggers != i64::from(k > 0) {
                        return Err(format!(
                            "{triggers} triggers on the collection with {k} subscriptions"
                        )
                        .into());
                    }
                    COLLECTION
                }
            };
            let rate = bulk_insert(admin, table, settings.rows)?;
            rates[t].push(rate);
            let name = match *target {
                Target::Bare => "bare".to_string(),
                Target::Collection(k) => format!("{k} subs"),
            };
            line += &format!("  {name} {}", thousands(rate));
            if *target != Target::Bare {
                line += &format!(" ({:.2})", rate / rates[0][round - 1]);
            }
        }
        println!("{line} rows/s");
    }
    subscriptions.remove_all(admin)?;
    let medians: Vec<f64> = rates.iter().map(|r| median(r)).collect();
    let bare = medians[0];
    println!("median of {} round(s):", settings.rounds);
    println!("rows/s into the bare table = {}", thousands(bare));
    for (t, target) in TARGETS.iter().enumerate().skip(1) {
        println!(
            "rows/s with {} = {:.2} × bare ({} rows/s; bare {} rows/s)",
            target.label(),
            medians[t] / bare,
            thousands(medians[t]),
            thousands(bare)
        );
    }
    Ok(medians)
}

fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.round());
    let (sign, digits) = digits
        .strip_prefix('-')
        .map_or(("", digits.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

fn met(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn main() -> Res<()> {
    let settings = Settings::from_env()?;
    let mut admin = Client::connect(&settings.dsn, NoTls)?;
    let version: String = admin.query_one("SHOW server_version", &[])?.get(0);
    let cpus = thread::available_parallelism().map_or(0, usize::from);
    println!(
        "pg_beacon event streams: PostgreSQL {version}, {cpus} CPUs; DURATION_S={} RATE={} ROUNDS={} ROWS={}{}",
        settings.duration_s,
        settings.rate,
        settings.rounds,
        settings.rows,
        settings
            .writer_synchronous_commit
            .as_ref()
            .map_or(String::new(), |v| format!(" WRITER_SYNCHRONOUS_COMMIT={v}"))
    );
    setup(&mut admin)?;
    let mut subscriptions = Subscriptions {
        channels: Vec::new(),
    };

    let latencies = [1, 50]
        .into_iter()
        .map(|count| stream_latency(&settings, &mut admin, &mut subscriptions, count))
        .collect::<Res<Vec<_>>>()?;
    let medians = write_cost(&settings, &mut admin, &mut subscriptions)?;
    admin.batch_execute(&format!(
        "SELECT beacon.drop_project('{PROJECT}'); DROP TABLE {BARE}"
    ))?;

    println!("\n== summary");
    let mut all_received = true;
    for l in &latencies {
        all_received &= l.received == l.sent;
        println!(
            "{:>2} subscription(s): latency from ack p50 {}, p99 {}, max {}; from call start p99 {}; \
             received {}/{}{}",
            l.subscriptions,
            ms(percentile(&l.from_ack, 50.0)),
            ms(percentile(&l.from_ack, 99.0)),
            ms(l.from_ack.last().copied().unwrap_or_default()),
            ms(percentile(&l.from_start, 99.0)),
            l.received,
            l.sent,
            if l.received == l.sent { "" } else { "  FAIL" }
        );
    }
    let bare = medians[0];
    for (t, target) in TARGETS.iter().enumerate().skip(1) {
        println!(
            "write with {}: {:.2} × bare",
            target.label(),
            medians[t] / bare
        );
    }
    println!("bare: {} rows/s", thousands(bare));
    let worst_p99 = latencies
        .iter()
        .map(|l| percentile(&l.from_ack, 99.0))
        .max()
        .unwrap_or_default();
    let ratio_50 = medians[3] / bare;
    println!("\ntargets:");
    println!(
        "stream latency p99 ≤ {}: {} (worst p99 {})",
        ms(TARGET_P99),
        met(worst_p99 <= TARGET_P99 && all_received),
        ms(worst_p99)
    );
    println!(
        "write cost with 50 non-matching subscriptions ≥ {TARGET_WRITE_RATIO} × bare: {} ({ratio_50:.2} × bare)",
        met(ratio_50 >= TARGET_WRITE_RATIO)
    );
    println!(
        "every event received: {}",
        if all_received { "yes" } else { "FAIL" }
    );
    if !all_received {
        std::process::exit(1);
    }
    Ok(())
}
