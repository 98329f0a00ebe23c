//! The differential fuzzer for continuous queries (generator, writers and oracle in
//! tests/common/fuzz/, its classes in tests/common/fuzz/classes.rs). The normal test
//! command runs a short seeded run bounded by rounds; `scripts/fuzz.sh --seconds N
//! [--seed S]` runs it for as long as asked.

mod common;
#[path = "common/fuzz/mod.rs"]
mod fuzz;

use std::fmt::Write;

/// The short run: epochs × rounds, each round 3 writers × 30 statements over 3 tables
/// with 3 queries each, compared before and after compaction.
const EPOCHS: u64 = 5;
const ROUNDS: u64 = 18;

#[test]
fn cq_fuzz() {
    let config = fuzz::Config::from_env(EPOCHS, ROUNDS);
    let summary = fuzz::run::run(&config, common::server());
    let mut report = format!(
        "cq_fuzz: seed {}, epochs' seeds {:?}, {} comparisons, {} writer statements, {} 0A000 refusals \
         of nondeterministic-collation keys, {} failure classes\n",
        config.seed,
        summary.epochs,
        summary.comparisons,
        summary.writer_ops,
        summary.refusals,
        summary.failures.len()
    );
    for (class, (count, _)) in &summary.failures {
        writeln!(report, "  {count:>4} × {class}").unwrap();
    }
    eprintln!("{report}");
    if let Some(path) = &config.report {
        let mut full = report.clone();
        for (_, first) in summary.failures.values() {
            writeln!(full, "\n{first}").unwrap();
        }
        std::fs::write(path, full).expect("BEACON_FUZZ_REPORT");
    }
    assert!(
        summary.failures.is_empty(),
        "{report}{}",
        config.rerun(config.seed)
    );
}
