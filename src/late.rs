//! Late data: the watermark, which partitions it has closed, and where a
//! late event goes under each `--late-policy` (DESIGN.md §4).
//!
//! - The watermark is the largest committed event time minus
//!   `--watermark-delay`. It is stored in every commit and never moves back.
//! - Partition (UTC day) `D` is *closed* once `watermark >= D+1 00:00`: from
//!   then on no event of `D` (all `< D+1 00:00`) is expected. An event is
//!   late when the watermark *before this run* had closed its partition, so
//!   a multi-day backfill in one run is not late against itself.
//! - Policies: `reopen` writes late events into their historical bronze
//!   partition; `side-output` parks them in `bronze/late` until `evlake
//!   reconcile`; `grace` parks only events with
//!   `watermark_before_run > end_of_day + allowed_lateness` and reopens for
//!   the rest.

use std::fmt;
use std::str::FromStr;

use crate::time::MICROS_PER_DAY;

/// What to do with a late event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LatePolicy {
    /// Write it into its historical partition (which becomes dirty).
    #[default]
    Reopen,
    /// Write it to the side output (`bronze_late`) for `reconcile`.
    SideOutput,
    /// Side output only when later than `allowed_lateness` past the end of
    /// its day (by the watermark); otherwise reopen.
    Grace,
}

impl LatePolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            LatePolicy::Reopen => "reopen",
            LatePolicy::SideOutput => "side-output",
            LatePolicy::Grace => "grace",
        }
    }
}

impl fmt::Display for LatePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LatePolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reopen" => Ok(LatePolicy::Reopen),
            "side-output" | "side_output" => Ok(LatePolicy::SideOutput),
            "grace" => Ok(LatePolicy::Grace),
            _ => Err(format!(
                "`{s}` is not a late policy; use reopen, side-output or grace"
            )),
        }
    }
}

/// Where an accepted event goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// Its partition was closed before this run (bronze `is_late`).
    pub is_late: bool,
    /// It goes to the side output (`bronze_late`) instead of bronze.
    pub side_output: bool,
}

/// The late-data rules of one run.
#[derive(Debug, Clone, Copy)]
pub struct LateRules {
    /// The committed watermark before this run (`None` for an empty lake).
    pub watermark_before: Option<i64>,
    pub policy: LatePolicy,
    /// For [`LatePolicy::Grace`].
    pub allowed_lateness: i64,
}

impl LateRules {
    /// Placement of an event whose partition is `event_date` (`Date32`).
    pub fn place(&self, event_date: i32) -> Placement {
        let Some(wm) = self.watermark_before else {
            return Placement {
                is_late: false,
                side_output: false,
            };
        };
        let end_of_day = (event_date as i64 + 1) * MICROS_PER_DAY;
        let is_late = wm >= end_of_day;
        let side_output = is_late
            && match self.policy {
                LatePolicy::Reopen => false,
                LatePolicy::SideOutput => true,
                LatePolicy::Grace => wm > end_of_day.saturating_add(self.allowed_lateness),
            };
        Placement {
            is_late,
            side_output,
        }
    }
}

/// The watermark after committing events up to `max_event_time`: it only
/// ever moves forward.
pub fn advance_watermark(
    before: Option<i64>,
    max_event_time: Option<i64>,
    delay: i64,
) -> Option<i64> {
    let candidate = max_event_time.map(|m| m.saturating_sub(delay));
    match (before, candidate) {
        (Some(b), Some(c)) => Some(b.max(c)),
        (b, c) => b.or(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{MICROS_PER_SECOND, parse_instant};

    fn date(s: &str) -> i32 {
        crate::time::date32_of_micros(parse_instant(&format!("{s}T12:00:00Z")).unwrap())
    }

    fn rules(wm: &str, policy: LatePolicy) -> LateRules {
        LateRules {
            watermark_before: Some(parse_instant(wm).unwrap()),
            policy,
            allowed_lateness: 24 * 3600 * MICROS_PER_SECOND,
        }
    }

    #[test]
    fn a_partition_closes_when_the_watermark_reaches_its_end() {
        let d = date("2024-03-15");
        // One microsecond before midnight: still open.
        let r = rules("2024-03-15T23:59:59.999999Z", LatePolicy::Reopen);
        assert!(!r.place(d).is_late);
        // Exactly midnight: every event of the 15th is <= the watermark.
        let r = rules("2024-03-16T00:00:00Z", LatePolicy::Reopen);
        assert!(r.place(d).is_late);
        assert!(!r.place(d).side_output);
        assert!(!r.place(date("2024-03-16")).is_late);
    }

    #[test]
    fn policies_route_late_events() {
        let d = date("2024-03-15");
        let side = rules("2024-03-16T00:00:00Z", LatePolicy::SideOutput).place(d);
        assert_eq!(
            side,
            Placement {
                is_late: true,
                side_output: true
            }
        );
        // Grace of 24h: side output only once the watermark is strictly past
        // the end of the day plus 24h.
        let g = rules("2024-03-17T00:00:00Z", LatePolicy::Grace).place(d);
        assert_eq!(
            g,
            Placement {
                is_late: true,
                side_output: false
            }
        );
        let g = rules("2024-03-17T00:00:00.000001Z", LatePolicy::Grace).place(d);
        assert_eq!(
            g,
            Placement {
                is_late: true,
                side_output: true
            }
        );
    }

    #[test]
    fn an_empty_lake_has_nothing_late() {
        let r = LateRules {
            watermark_before: None,
            policy: LatePolicy::SideOutput,
            allowed_lateness: 0,
        };
        assert!(!r.place(0).is_late);
    }

    #[test]
    fn the_watermark_never_moves_back() {
        let h = 3600 * MICROS_PER_SECOND;
        assert_eq!(advance_watermark(None, Some(10 * h), h), Some(9 * h));
        assert_eq!(advance_watermark(Some(9 * h), Some(5 * h), h), Some(9 * h));
        assert_eq!(advance_watermark(Some(9 * h), None, h), Some(9 * h));
        assert_eq!(
            advance_watermark(Some(9 * h), Some(20 * h), h),
            Some(19 * h)
        );
    }

    #[test]
    fn policy_names() {
        assert_eq!(
            "side-output".parse::<LatePolicy>().unwrap(),
            LatePolicy::SideOutput
        );
        assert!("later".parse::<LatePolicy>().is_err());
    }
}
