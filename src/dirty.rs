//! Dirtiness, derived from the commit log and never marked (DESIGN.md §3).
//!
//! Every table partition has a version: the last commit that added files
//! to it. Every derived partition's [`Build`] records the versions of the
//! input partitions it read and a fingerprint of the SQL and settings that
//! produced it. A derived partition is dirty when it was never built, when
//! any input now has a newer version, or when its fingerprint changed.
//! Because this is computed from the log, a crash cannot lose a dirty mark,
//! and only a committed recompute (a commit carrying new `Build`s) clears it.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

use crate::log::{Build, LakeState};

/// `table/partition`, the key of an input in a [`Build`].
pub fn input_key(table: &str, partition: &str) -> String {
    format!("{table}/{partition}")
}

/// The current version of an input partition (`None` if it has no files
/// and never had).
pub fn input_version(state: &LakeState, key: &str) -> Option<u64> {
    let (table, partition) = key.split_once('/')?;
    state
        .tables
        .get(table)
        .and_then(|t| t.get(partition))
        .map(|p| p.version)
}

/// A fingerprint of the SQL texts and settings that build a table.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut h = blake3::Hasher::new();
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().to_hex()[..16].to_string()
}

/// Why a derived partition must be recomputed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DirtyReason {
    /// No build of this partition was ever committed.
    NeverBuilt,
    /// An input partition changed after the build read it.
    InputChanged {
        input: String,
        built_from: u64,
        /// The commit that made it dirty.
        changed_in: u64,
    },
    /// The build read an input that the partition no longer depends on, or
    /// depends on one it did not read.
    InputsDiffer { input: String },
    /// The SQL or settings changed.
    FingerprintChanged { built_with: String, now: String },
}

impl fmt::Display for DirtyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirtyReason::NeverBuilt => write!(f, "never built"),
            DirtyReason::InputChanged {
                input,
                built_from,
                changed_in,
            } => write!(
                f,
                "{input} changed in commit {changed_in} (built from {built_from})"
            ),
            DirtyReason::InputsDiffer { input } => {
                write!(f, "depends on {input}, which the build did not read")
            }
            DirtyReason::FingerprintChanged { built_with, now } => {
                write!(f, "SQL or settings changed ({built_with} → {now})")
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirtyPartition {
    pub table: String,
    pub partition: String,
    pub reasons: Vec<DirtyReason>,
}

/// The dirty partitions of derived `table`. `wanted` maps every partition
/// the table should have to the input partitions (`table/partition`) it
/// reads; `fingerprint` is the current SQL/settings fingerprint.
pub fn dirty_partitions(
    state: &LakeState,
    table: &str,
    fingerprint: &str,
    wanted: &BTreeMap<String, Vec<String>>,
) -> Vec<DirtyPartition> {
    let builds = state.builds.get(table);
    let mut out = Vec::new();
    for (partition, inputs) in wanted {
        let reasons = match builds.and_then(|b| b.get(partition)) {
            None => vec![DirtyReason::NeverBuilt],
            Some((_, build)) => {
                reasons_for(build, fingerprint, inputs, |k| input_version(state, k))
            }
        };
        if !reasons.is_empty() {
            out.push(DirtyPartition {
                table: table.to_string(),
                partition: partition.clone(),
                reasons,
            });
        }
    }
    out
}

/// Why `build` is not current against `fingerprint` and `inputs`, whose
/// versions now are `version_now(input)`: the lake's (see
/// [`dirty_partitions`]), or those another build read (a typed table is
/// current when it read what the date's built `events` read).
pub fn reasons_for(
    build: &Build,
    fingerprint: &str,
    inputs: &[String],
    version_now: impl Fn(&str) -> Option<u64>,
) -> Vec<DirtyReason> {
    let mut reasons = Vec::new();
    if build.fingerprint != fingerprint {
        reasons.push(DirtyReason::FingerprintChanged {
            built_with: build.fingerprint.clone(),
            now: fingerprint.to_string(),
        });
    }
    for input in inputs {
        let now = version_now(input);
        match (build.inputs.get(input), now) {
            (Some(&built_from), Some(now)) if now > built_from => {
                reasons.push(DirtyReason::InputChanged {
                    input: input.clone(),
                    built_from,
                    changed_in: now,
                })
            }
            (None, Some(_)) => reasons.push(DirtyReason::InputsDiffer {
                input: input.clone(),
            }),
            _ => {}
        }
    }
    reasons
}

/// The build record for a recompute of `partition` of `table` that read
/// `inputs` as they are in `state` now. Put it in the recompute's commit.
pub fn build_record(
    state: &LakeState,
    table: &str,
    partition: &str,
    inputs: &[String],
    fingerprint: &str,
) -> Build {
    Build {
        table: table.to_string(),
        partition: partition.to_string(),
        inputs: inputs
            .iter()
            .filter_map(|k| input_version(state, k).map(|v| (k.clone(), v)))
            .collect(),
        fingerprint: fingerprint.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{Commit, FileAction};

    fn add(version: u64, partition: &str) -> Commit {
        let mut c = Commit::next(&LakeState::default(), "ingest", 0);
        c.version = version;
        c.add = vec![FileAction::plain(
            "bronze_events",
            partition,
            format!("bronze/events/event_date={partition}/part-{version}.parquet"),
            1,
            1,
        )];
        c
    }

    fn wanted(state: &LakeState) -> BTreeMap<String, Vec<String>> {
        state
            .partitions("bronze_events")
            .map(|(p, _)| (p.clone(), vec![input_key("bronze_events", p)]))
            .collect()
    }

    #[test]
    fn dirty_is_exactly_what_changed_after_the_build() {
        let mut log = vec![add(1, "2024-03-14"), add(2, "2024-03-15")];
        let state = LakeState::replay(&log);
        let all = dirty_partitions(&state, "daily", "fp1", &wanted(&state));
        assert_eq!(all.len(), 2);
        assert!(all.iter().all(|d| d.reasons == [DirtyReason::NeverBuilt]));

        // A recompute of both clears them.
        let mut c = Commit::next(&state, "gold", 0);
        for p in ["2024-03-14", "2024-03-15"] {
            c.builds.push(build_record(
                &state,
                "daily",
                p,
                &[input_key("bronze_events", p)],
                "fp1",
            ));
        }
        log.push(c);
        let state = LakeState::replay(&log);
        assert!(dirty_partitions(&state, "daily", "fp1", &wanted(&state)).is_empty());

        // A late event reopens the 14th only; a new day is never built.
        log.push(add(4, "2024-03-14"));
        log.push(add(5, "2024-03-16"));
        let state = LakeState::replay(&log);
        let d = dirty_partitions(&state, "daily", "fp1", &wanted(&state));
        assert_eq!(
            d.iter().map(|d| d.partition.as_str()).collect::<Vec<_>>(),
            ["2024-03-14", "2024-03-16"]
        );
        assert_eq!(
            d[0].reasons,
            [DirtyReason::InputChanged {
                input: "bronze_events/2024-03-14".into(),
                built_from: 1,
                changed_in: 4
            }]
        );
        assert_eq!(
            d[0].reasons[0].to_string(),
            "bronze_events/2024-03-14 changed in commit 4 (built from 1)"
        );

        // A changed fingerprint makes every built partition dirty.
        let d = dirty_partitions(&state, "daily", "fp2", &wanted(&state));
        assert_eq!(d.len(), 3);
        assert!(matches!(
            d[1].reasons[0],
            DirtyReason::FingerprintChanged { .. }
        ));
    }

    #[test]
    fn fingerprints_separate_their_parts() {
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
        assert_eq!(fingerprint(&["x"]), fingerprint(&["x"]));
    }
}
