//! Session reach: which dates an incremental silver recompute must load
//! (DESIGN.md §5).
//!
//! New bronze rows land only in the dirty dates, so only the sessions of
//! users who have events on a dirty date can change ("touched users"). Their
//! sessions may cross midnight into neighbouring dates, and a late event
//! can merge sessions across several days. So the loaded range grows from
//! the dirty dates, one day at a time, while some touched user has a
//! session crossing its edge: their last event before the edge and their
//! first event after it are at most `--session-gap` apart. When it stops,
//! no touched user's session crosses an edge of the loaded range, so
//! sessionizing the touched users' events over that range gives exactly
//! the sessions a full rebuild would give them. Bronze is append-only, so
//! a session that crossed an edge before the new rows arrived still
//! crosses it afterwards; old sessions cannot hide outside the range.
//!
//! The gap is at most one day, so a session can only cross into the
//! adjacent date.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use anyhow::Result;

/// A date as days since 1970-01-01 (Arrow `Date32`).
pub type Day = i32;

/// First and last event time of one user on one date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDay {
    pub user: String,
    pub day: Day,
    pub first: i64,
    pub last: i64,
}

/// Where the per-user, per-date event time ranges come from.
#[allow(async_fn_in_trait)] // used generically, never as `dyn`
pub trait Stats {
    /// Every user's range on the dirty `days` (bronze, all rows).
    async fn dirty(&mut self, days: &BTreeSet<Day>) -> Result<Vec<UserDay>>;
    /// The ranges of `users` on `days`, which are not dirty (so the built
    /// silver events are current for them).
    async fn neighbours(
        &mut self,
        days: &BTreeSet<Day>,
        users: &HashSet<String>,
    ) -> Result<Vec<UserDay>>;
}

/// What an incremental recompute loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// Users with events on a dirty date: only their sessions can change.
    pub users: HashSet<String>,
    /// The dirty dates plus the neighbouring dates sessions reach into.
    pub loaded: BTreeSet<Day>,
}

/// Grow the dirty dates into the loaded range. `existing` is every date
/// that has bronze rows; `gap` the session gap in microseconds.
pub async fn reach(
    dirty: &BTreeSet<Day>,
    existing: &BTreeSet<Day>,
    gap: i64,
    stats: &mut impl Stats,
) -> Result<Reach> {
    let mut ranges: HashMap<(String, Day), (i64, i64)> = HashMap::new();
    let mut users = HashSet::new();
    for r in stats.dirty(dirty).await? {
        users.insert(r.user.clone());
        ranges.insert((r.user, r.day), (r.first, r.last));
    }
    let mut loaded = dirty.clone();
    // Dates checked and not reached, valid until a neighbour is loaded.
    let mut rejected: BTreeSet<Day> = BTreeSet::new();
    loop {
        let candidates: BTreeSet<Day> = loaded
            .iter()
            .flat_map(|d| [d - 1, d + 1])
            .filter(|c| !loaded.contains(c) && !rejected.contains(c) && existing.contains(c))
            .collect();
        if candidates.is_empty() || users.is_empty() {
            break;
        }
        let mut by_day: BTreeMap<Day, Vec<UserDay>> = BTreeMap::new();
        for r in stats.neighbours(&candidates, &users).await? {
            by_day.entry(r.day).or_default().push(r);
        }
        let mut added = Vec::new();
        for c in candidates {
            let rows = by_day.remove(&c).unwrap_or_default();
            let crosses = rows.iter().any(|r| {
                let after = (loaded.contains(&(c + 1)))
                    .then(|| ranges.get(&(r.user.clone(), c + 1)))
                    .flatten()
                    .is_some_and(|(first, _)| first - r.last <= gap);
                let before = (loaded.contains(&(c - 1)))
                    .then(|| ranges.get(&(r.user.clone(), c - 1)))
                    .flatten()
                    .is_some_and(|(_, last)| r.first - last <= gap);
                after || before
            });
            if crosses {
                added.push((c, rows));
            } else {
                rejected.insert(c);
            }
        }
        if added.is_empty() {
            break;
        }
        for (c, rows) in added {
            loaded.insert(c);
            rejected.remove(&(c - 1));
            rejected.remove(&(c + 1));
            for r in rows {
                ranges.insert((r.user, r.day), (r.first, r.last));
            }
        }
    }
    Ok(Reach { users, loaded })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::MICROS_PER_DAY;

    const MIN: i64 = 60 * 1_000_000;
    const GAP: i64 = 30 * MIN;

    /// Events as (user, absolute µs); stats are computed from them.
    struct Fake {
        events: Vec<(&'static str, i64)>,
        neighbour_calls: usize,
    }

    impl Fake {
        fn ranges(&self, keep: impl Fn(&str, Day) -> bool) -> Vec<UserDay> {
            let mut m: BTreeMap<(String, Day), (i64, i64)> = BTreeMap::new();
            for (u, t) in &self.events {
                let d = t.div_euclid(MICROS_PER_DAY) as Day;
                if keep(u, d) {
                    let e = m.entry((u.to_string(), d)).or_insert((*t, *t));
                    e.0 = e.0.min(*t);
                    e.1 = e.1.max(*t);
                }
            }
            m.into_iter()
                .map(|((user, day), (first, last))| UserDay {
                    user,
                    day,
                    first,
                    last,
                })
                .collect()
        }
        fn days(&self) -> BTreeSet<Day> {
            self.events
                .iter()
                .map(|(_, t)| t.div_euclid(MICROS_PER_DAY) as Day)
                .collect()
        }
    }

    impl Stats for Fake {
        async fn dirty(&mut self, days: &BTreeSet<Day>) -> Result<Vec<UserDay>> {
            Ok(self.ranges(|_, d| days.contains(&d)))
        }
        async fn neighbours(
            &mut self,
            days: &BTreeSet<Day>,
            users: &HashSet<String>,
        ) -> Result<Vec<UserDay>> {
            self.neighbour_calls += 1;
            Ok(self.ranges(|u, d| days.contains(&d) && users.contains(u)))
        }
    }

    fn at(day: i64, minutes: i64) -> i64 {
        day * MICROS_PER_DAY + minutes * MIN
    }

    fn run(events: Vec<(&'static str, i64)>, dirty: &[Day]) -> Reach {
        let mut f = Fake {
            events,
            neighbour_calls: 0,
        };
        let existing = f.days();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(reach(
            &dirty.iter().copied().collect(),
            &existing,
            GAP,
            &mut f,
        ))
        .unwrap()
    }

    fn days(r: &Reach) -> Vec<Day> {
        r.loaded.iter().copied().collect()
    }

    #[test]
    fn no_session_crosses_midnight_so_only_the_dirty_date_loads() {
        let r = run(
            vec![
                ("u", at(9, 12 * 60)),
                ("u", at(10, 12 * 60)),
                ("u", at(11, 60)),
            ],
            &[10],
        );
        assert_eq!(days(&r), [10]);
        assert_eq!(r.users, HashSet::from(["u".to_string()]));
    }

    #[test]
    fn a_session_crossing_either_edge_pulls_in_the_neighbour() {
        // 23:50 on day 9 → 00:10 on day 10: crosses backwards.
        let r = run(vec![("u", at(9, 1430)), ("u", at(10, 10))], &[10]);
        assert_eq!(days(&r), [9, 10]);
        // 23:40 on day 10 → 00:10 on day 11: exactly 30 min, crosses forwards.
        let r = run(vec![("u", at(10, 1420)), ("u", at(11, 10))], &[10]);
        assert_eq!(days(&r), [10, 11]);
        // 31 minutes apart: a new session, nothing to load.
        let r = run(vec![("u", at(10, 1419)), ("u", at(11, 10))], &[10]);
        assert_eq!(days(&r), [10]);
    }

    #[test]
    fn only_touched_users_extend_the_range() {
        // v crosses midnight 9→10 but has no event on the dirty date 11;
        // u, who has, does not cross.
        let r = run(
            vec![
                ("v", at(9, 1430)),
                ("v", at(10, 10)),
                ("u", at(10, 600)),
                ("u", at(11, 600)),
            ],
            &[11],
        );
        assert_eq!(days(&r), [11]);
    }

    #[test]
    fn a_session_spanning_days_is_followed_to_its_end() {
        // One user active every 20 minutes from day 8 to day 12.
        let mut ev = Vec::new();
        for i in 0..(4 * 24 * 3) {
            ev.push(("bot", at(8, 12 * 60) + i * 20 * MIN));
        }
        ev.push(("bot", at(14, 0)));
        let r = run(ev, &[10]);
        assert_eq!(days(&r), [8, 9, 10, 11, 12]);
    }

    #[test]
    fn a_rejected_date_is_rechecked_when_its_other_neighbour_loads() {
        // Dirty 10 and 13. 12 is not reached from 13 (no crossing 12/13
        // for u), but w on 13 crosses back into 12... only w's crossing
        // matters and it pulls 12 in; then u's crossing 11/12 pulls 11.
        let r = run(
            vec![
                ("u", at(10, 1430)),
                ("u", at(11, 10)),
                ("u", at(11, 1430)),
                ("u", at(12, 10)),
                ("w", at(12, 1430)),
                ("w", at(13, 10)),
            ],
            &[13],
        );
        assert_eq!(days(&r), [12, 13]);
        let r = run(
            vec![
                ("u", at(10, 1430)),
                ("u", at(11, 10)),
                ("u", at(11, 1430)),
                ("u", at(12, 10)),
                ("u", at(13, 600)),
            ],
            &[10, 13],
        );
        assert_eq!(days(&r), [10, 11, 12, 13]);
    }

    #[test]
    fn dates_without_bronze_are_never_loaded() {
        let r = run(vec![("u", at(10, 5))], &[10]);
        assert_eq!(days(&r), [10]);
    }
}
