//! Session reach: which rows an incremental silver recompute must load
//! (DESIGN.md §5).
//!
//! New bronze rows land only in the dirty dates, so only the sessions of
//! users who have events on a dirty date can change ("touched users"). A
//! touched user's sessions may cross midnight into a neighbouring date, and
//! a late event can merge sessions across several days. So, per touched
//! user, the loaded dates grow from the dirty dates one day at a time while
//! that user has a session crossing the edge: their last event before
//! midnight and their first event after it are at most `--session-gap`
//! apart. When it stops, none of the user's sessions crosses an edge of
//! their loaded dates, so sessionizing their events over those dates gives
//! exactly the sessions a full rebuild would give them. Bronze is
//! append-only, so a session that crossed an edge before the new rows
//! arrived still crosses it afterwards; old sessions cannot hide outside.
//! The one exception, a date `retract` took rows from, is given each
//! user's range of the rows built before as well (see `LakeStats`), so
//! the sessions that crossed its edges are followed too.
//!
//! Growing per user, not per date, keeps the load small: on a busy lake
//! some user crosses every midnight, but only the few touched users who do
//! are followed into the next day, and only their rows are read there.
//!
//! The gap is at most one day, so a session can only cross into the
//! adjacent date.

use std::collections::{BTreeSet, HashMap, HashSet};

use anyhow::Result;

use crate::time::MICROS_PER_DAY;

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
    /// The ranges of these (user, date) pairs, on dates that are not dirty
    /// (so the built silver events are current for them). Pairs where the
    /// user has no events are left out.
    async fn neighbours(&mut self, pairs: &BTreeSet<(String, Day)>) -> Result<Vec<UserDay>>;
}

/// What an incremental recompute loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reach {
    /// Users with events on a dirty date: only their sessions can change.
    pub touched_users: usize,
    /// (user, date) outside the dirty dates that a touched user's sessions
    /// reach into: those rows are loaded and recomputed too.
    pub extended: BTreeSet<(String, Day)>,
    /// The dirty dates plus every date in `extended`.
    pub loaded: BTreeSet<Day>,
}

/// Follow every touched user's sessions out of the dirty dates. `existing`
/// is every date that has bronze rows; `gap` the session gap in µs.
///
/// `partial` are (user, date) pairs on dates that are dirty only for some
/// users (their bronze grew by rows of these users): there, only these
/// users are touched, and every other user's built rows stay current.
pub async fn reach(
    dirty: &BTreeSet<Day>,
    partial: &BTreeSet<(String, Day)>,
    existing: &BTreeSet<Day>,
    gap: i64,
    stats: &mut impl Stats,
) -> Result<Reach> {
    let mut ranges: HashMap<(String, Day), (i64, i64)> = HashMap::new();
    let mut users = HashSet::new();
    let mut read: BTreeSet<Day> = dirty.clone();
    read.extend(partial.iter().map(|(_, d)| *d));
    for r in stats.dirty(&read).await? {
        if !dirty.contains(&r.day) && !partial.contains(&(r.user.clone(), r.day)) {
            continue;
        }
        users.insert(r.user.clone());
        ranges.insert((r.user, r.day), (r.first, r.last));
    }
    let mut extended: BTreeSet<(String, Day)> = BTreeSet::new();
    // Pairs checked and not reached, valid until a neighbour is loaded.
    let mut rejected: HashSet<(String, Day)> = HashSet::new();
    // Loaded (user, date) pairs whose neighbours have not been checked.
    let mut frontier: Vec<(String, Day)> = ranges.keys().cloned().collect();
    loop {
        let loaded = |u: &str, d: Day, ext: &BTreeSet<(String, Day)>| {
            dirty.contains(&d) || {
                let pair = (u.to_string(), d);
                partial.contains(&pair) || ext.contains(&pair)
            }
        };
        let mut candidates: BTreeSet<(String, Day)> = BTreeSet::new();
        for (u, d) in frontier.drain(..) {
            // A session crosses an edge of the date only from an event
            // within the gap of it: the neighbour's events are all on the
            // other side of midnight. Users active only mid-day (most of
            // them) are not asked about.
            let (first, last) = ranges[&(u.clone(), d)];
            let start = i64::from(d) * MICROS_PER_DAY;
            let near = [first - start <= gap, start + MICROS_PER_DAY - last <= gap];
            for (c, near) in [d - 1, d + 1].into_iter().zip(near) {
                if !near {
                    continue;
                }
                let pair = (u.clone(), c);
                if existing.contains(&c) && !loaded(&u, c, &extended) && !rejected.contains(&pair) {
                    candidates.insert(pair);
                }
            }
        }
        if candidates.is_empty() {
            break;
        }
        let rows = stats.neighbours(&candidates).await?;
        let mut found: HashSet<(String, Day)> = HashSet::new();
        for r in rows {
            let (u, c) = (r.user.clone(), r.day);
            found.insert((u.clone(), c));
            let edge = |d: Day| {
                loaded(&u, d, &extended)
                    .then(|| ranges.get(&(u.clone(), d)).copied())
                    .flatten()
            };
            let crosses = edge(c + 1).is_some_and(|(first, _)| first - r.last <= gap)
                || edge(c - 1).is_some_and(|(_, last)| r.first - last <= gap);
            if crosses {
                ranges.insert((u.clone(), c), (r.first, r.last));
                extended.insert((u.clone(), c));
                rejected.remove(&(u.clone(), c - 1));
                rejected.remove(&(u.clone(), c + 1));
                frontier.push((u, c));
            } else {
                rejected.insert((u, c));
            }
        }
        // No events that day: nothing to cross.
        rejected.extend(candidates.into_iter().filter(|p| !found.contains(p)));
    }
    let mut loaded = read;
    loaded.extend(extended.iter().map(|(_, d)| *d));
    Ok(Reach {
        touched_users: users.len(),
        extended,
        loaded,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const MIN: i64 = 60 * 1_000_000;
    const GAP: i64 = 30 * MIN;

    /// Events as (user, absolute µs); stats are computed from them.
    struct Fake {
        events: Vec<(&'static str, i64)>,
        /// Every pair asked about.
        asked: BTreeSet<(String, Day)>,
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
        async fn neighbours(&mut self, pairs: &BTreeSet<(String, Day)>) -> Result<Vec<UserDay>> {
            self.asked.extend(pairs.iter().cloned());
            Ok(self.ranges(|u, d| pairs.contains(&(u.to_string(), d))))
        }
    }

    fn at(day: i64, minutes: i64) -> i64 {
        day * MICROS_PER_DAY + minutes * MIN
    }

    fn run(events: Vec<(&'static str, i64)>, dirty: &[Day]) -> Reach {
        run_partial(events, dirty, &[])
    }

    /// With `partial` (user, date) pairs: dates dirty for those users only.
    fn run_partial(
        events: Vec<(&'static str, i64)>,
        dirty: &[Day],
        partial: &[(&str, Day)],
    ) -> Reach {
        run_asking(events, dirty, partial).0
    }

    /// [`run_partial`], and every pair the reach asked about.
    fn run_asking(
        events: Vec<(&'static str, i64)>,
        dirty: &[Day],
        partial: &[(&str, Day)],
    ) -> (Reach, BTreeSet<(String, Day)>) {
        let mut f = Fake {
            events,
            asked: BTreeSet::new(),
        };
        let existing = f.days();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let r = rt
            .block_on(reach(
                &dirty.iter().copied().collect(),
                &partial.iter().map(|(u, d)| (u.to_string(), *d)).collect(),
                &existing,
                GAP,
                &mut f,
            ))
            .unwrap();
        (r, f.asked)
    }

    #[test]
    fn on_a_partly_dirty_date_only_its_touched_users_are_followed() {
        // Day 10 grew by rows of u only. v crosses 10→11 but is not
        // touched: nothing of v loads. u crosses 10→11 and 11→12: followed.
        // w is touched on day 12 (a fully dirty date) and crosses 11→12
        // back into day 11.
        let r = run_partial(
            vec![
                ("v", at(10, 1430)),
                ("v", at(11, 10)),
                ("u", at(10, 1430)),
                ("u", at(11, 10)),
                ("u", at(11, 1435)),
                ("u", at(12, 5)),
                ("w", at(11, 1435)),
                ("w", at(12, 1)),
            ],
            &[12],
            &[("u", 10)],
        );
        let ext: Vec<(String, Day)> = r.extended.iter().cloned().collect();
        assert_eq!(ext, [("u".to_string(), 11), ("w".to_string(), 11)]);
        assert_eq!(r.touched_users, 2); // u (on 10 and 12) and w (on 12)
        assert_eq!(days(&r), [10, 11, 12]);
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
        assert_eq!(r.touched_users, 1);
        assert!(r.extended.is_empty());
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
    fn only_the_users_who_cross_are_followed() {
        // u and v both have events on the dirty 10th and the 9th; only u's
        // session crosses midnight, so only u's rows of the 9th load.
        let r = run(
            vec![
                ("u", at(9, 1430)),
                ("u", at(10, 10)),
                ("v", at(9, 600)),
                ("v", at(10, 600)),
            ],
            &[10],
        );
        assert_eq!(r.touched_users, 2);
        assert_eq!(r.extended, BTreeSet::from([("u".to_string(), 9)]));
        assert_eq!(days(&r), [9, 10]);
    }

    #[test]
    fn only_users_active_within_the_gap_of_midnight_are_asked_about() {
        // u's first event is 30 minutes after midnight (could continue a
        // session from the 9th), v's last 30 minutes before the next one
        // (could run into the 11th); w is active mid-day only, x 31
        // minutes from either edge. Only u's 9th and v's 11th are asked.
        let (r, asked) = run_asking(
            vec![
                ("u", at(9, 600)),
                ("u", at(10, 30)),
                ("u", at(10, 700)),
                ("v", at(10, 800)),
                ("v", at(10, 1410)),
                ("v", at(11, 600)),
                ("w", at(9, 1439)),
                ("w", at(10, 720)),
                ("w", at(11, 0)),
                ("x", at(9, 1439)),
                ("x", at(10, 31)),
                ("x", at(10, 1408)),
                ("x", at(11, 0)),
            ],
            &[10],
            &[],
        );
        assert_eq!(
            asked,
            BTreeSet::from([("u".to_string(), 9), ("v".to_string(), 11)])
        );
        // Neither crosses (10 hours apart): nothing more loads.
        assert_eq!(days(&r), [10]);
    }

    #[test]
    fn dates_without_bronze_are_never_loaded() {
        let r = run(vec![("u", at(10, 5))], &[10]);
        assert_eq!(days(&r), [10]);
    }
}
