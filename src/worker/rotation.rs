//! Who gets a background worker slot when there are fewer slots than databases: pure
//! decisions of the launcher, kept apart so they can be tested without a server.
//!
//! Every database with pg_beacon must be maintained. When a scheduler cannot be started
//! for lack of a slot, the database waits, and schedulers that have finished at least one
//! round since they started give their slot up, oldest first, one per waiting database.
//! Waiting databases are started longest-waiting first, so with k slots and n databases
//! each database is maintained at least once every ⌈n/k⌉ rotations.

use super::board::Entry;

/// A database that needs a scheduler and has none: its order key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    pub database: u32,
    pub waiting_since: i64,
    pub last_round: i64,
}

impl Candidate {
    pub fn of(database: u32, entry: Option<&Entry>) -> Candidate {
        Candidate {
            database,
            waiting_since: entry.map_or(0, |e| e.waiting_since),
            last_round: entry.map_or(0, |e| e.last_round),
        }
    }
}

/// The order in which to try starting schedulers: databases already waiting (longest
/// first), then those maintained least recently (never maintained first).
pub fn start_order(mut candidates: Vec<Candidate>) -> Vec<Candidate> {
    candidates.sort_by_key(|c| {
        (
            c.waiting_since == 0,
            c.waiting_since,
            c.last_round,
            c.database,
        )
    });
    candidates
}

/// A running scheduler, as the board describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running {
    pub database: u32,
    pub started: i64,
    pub rounds: i64,
}

/// The schedulers to ask to give up their slot: at most one per waiting database, only
/// those that have done a round since they started (a new one must do its share first),
/// longest-running first.
pub fn to_yield(mut running: Vec<Running>, waiting: usize) -> Vec<u32> {
    running.retain(|r| r.rounds >= 1);
    running.sort_by_key(|r| (r.started, r.database));
    running
        .into_iter()
        .take(waiting)
        .map(|r| r.database)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_databases_start_first_longest_waiting_first() {
        let order = start_order(vec![
            Candidate {
                database: 1,
                waiting_since: 0,
                last_round: 0,
            },
            Candidate {
                database: 2,
                waiting_since: 50,
                last_round: 10,
            },
            Candidate {
                database: 3,
                waiting_since: 20,
                last_round: 30,
            },
            Candidate {
                database: 4,
                waiting_since: 0,
                last_round: 5,
            },
        ]);
        let ids: Vec<u32> = order.iter().map(|c| c.database).collect();
        assert_eq!(ids, vec![3, 2, 1, 4]);
    }

    #[test]
    fn only_schedulers_that_did_a_round_yield_and_no_more_than_needed() {
        let running = vec![
            Running {
                database: 1,
                started: 30,
                rounds: 4,
            },
            Running {
                database: 2,
                started: 10,
                rounds: 0,
            },
            Running {
                database: 3,
                started: 20,
                rounds: 1,
            },
            Running {
                database: 4,
                started: 5,
                rounds: 9,
            },
        ];
        assert_eq!(to_yield(running.clone(), 2), vec![4, 3]);
        assert_eq!(to_yield(running.clone(), 0), Vec::<u32>::new());
        assert_eq!(to_yield(running, 10), vec![4, 3, 1]);
    }

    /// Simulates k slots and n databases through the launcher's rules (a yielded
    /// scheduler's exit wakes the launcher, which starts the next waiting database at
    /// once): every database is maintained, and none waits more than ⌈n/k⌉ rounds.
    #[test]
    fn rotation_serves_every_database() {
        for (slots, databases) in [(1usize, 5u32), (2, 7), (3, 3), (2, 9), (4, 5), (3, 5)] {
            let mut running: Vec<Running> = Vec::new();
            let mut waiting_since = vec![0i64; databases as usize + 1];
            let mut last_round = vec![0i64; databases as usize + 1];
            let mut longest_wait = 0;
            let start = |tick: i64,
                         running: &mut Vec<Running>,
                         waiting_since: &mut Vec<i64>,
                         last_round: &[i64]| {
                let candidates: Vec<Candidate> = (1..=databases)
                    .filter(|d| !running.iter().any(|r| r.database == *d))
                    .map(|d| Candidate {
                        database: d,
                        waiting_since: waiting_since[d as usize],
                        last_round: last_round[d as usize],
                    })
                    .collect();
                let mut waiting = 0;
                for c in start_order(candidates) {
                    if running.len() < slots {
                        running.push(Running {
                            database: c.database,
                            started: tick,
                            rounds: 0,
                        });
                        waiting_since[c.database as usize] = 0;
                    } else {
                        if waiting_since[c.database as usize] == 0 {
                            waiting_since[c.database as usize] = tick;
                        }
                        waiting += 1;
                    }
                }
                waiting
            };
            for tick in 1..200i64 {
                // each running scheduler does one round per tick
                for r in running.iter_mut() {
                    r.rounds += 1;
                    last_round[r.database as usize] = tick;
                }
                let waiting = start(tick, &mut running, &mut waiting_since, &last_round);
                for d in to_yield(running.clone(), waiting) {
                    running.retain(|r| r.database != d);
                }
                start(tick, &mut running, &mut waiting_since, &last_round);
                for d in 1..=databases {
                    let since = waiting_since[d as usize];
                    if since != 0 {
                        longest_wait = longest_wait.max(tick - since);
                    }
                }
            }
            assert!(
                (1..=databases).all(|d| last_round[d as usize] > 190),
                "{slots} slots, {databases} databases: {last_round:?}"
            );
            let bound = (databases as i64 + slots as i64 - 1) / slots as i64;
            assert!(
                longest_wait <= bound,
                "{slots} slots, {databases} databases: waited {longest_wait} > {bound}"
            );
        }
    }
}
