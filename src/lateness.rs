//! Lateness: how long after an event happened the pipeline saw it
//! (`processing_time - event_timestamp`).
//!
//! A fixed-size log-linear histogram (like HdrHistogram with two significant
//! digits) keeps memory constant however many events a run reads, merges
//! across threads and commits, and is small enough to store in every commit,
//! so lateness reports read metadata only.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Values below this are counted exactly (milliseconds).
const LINEAR: u64 = 128;
/// Sub-buckets per power of two above `LINEAR` (≈1.6% relative error).
const SUB: u64 = 64;

fn bucket_of(ms: u64) -> u32 {
    if ms < LINEAR {
        return ms as u32;
    }
    let exp = 63 - ms.leading_zeros() as u64; // >= 7
    let sub = (ms >> (exp - 6)) & (SUB - 1);
    (LINEAR + (exp - 7) * SUB + sub) as u32
}

/// The smallest value that falls in `bucket`.
fn bucket_floor(bucket: u32) -> u64 {
    let b = bucket as u64;
    if b < LINEAR {
        return b;
    }
    let exp = (b - LINEAR) / SUB + 7;
    let sub = (b - LINEAR) % SUB;
    (1 << exp) | (sub << (exp - 6))
}

/// Lateness distribution in milliseconds. Events ahead of the processing
/// time (a fast client clock) count as lateness 0 and in `ahead`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatenessHistogram {
    pub count: u64,
    #[serde(default)]
    pub ahead: u64,
    pub max_ms: u64,
    /// bucket index → count (sparse).
    pub buckets: BTreeMap<u32, u64>,
}

/// A histogram as the log stores it (one per bronze file, in every
/// checkpoint): its JSON text, parsed only when a lateness report asks.
/// Every command loads the log, and building each file's bucket map had
/// been most of that load (a 5M-event lake's checkpoint is ~75% bronze
/// files, most of each their two histograms). The text is what a commit
/// holds, so commits and checkpoints read and write as before.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoredHistogram(Box<serde_json::value::RawValue>);

impl StoredHistogram {
    pub fn new(h: &LatenessHistogram) -> StoredHistogram {
        StoredHistogram(serde_json::value::to_raw_value(h).expect("a histogram serializes"))
    }

    /// The histogram (empty if the stored text is not one).
    pub fn get(&self) -> LatenessHistogram {
        serde_json::from_str(self.0.get()).unwrap_or_default()
    }
}

impl PartialEq for StoredHistogram {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl LatenessHistogram {
    pub fn record_micros(&mut self, lateness_us: i64) {
        if lateness_us < 0 {
            self.ahead += 1;
        }
        let ms = (lateness_us.max(0) / 1000) as u64;
        self.count += 1;
        self.max_ms = self.max_ms.max(ms);
        *self.buckets.entry(bucket_of(ms)).or_default() += 1;
    }

    pub fn merge(&mut self, other: &LatenessHistogram) {
        self.count += other.count;
        self.ahead += other.ahead;
        self.max_ms = self.max_ms.max(other.max_ms);
        for (b, c) in &other.buckets {
            *self.buckets.entry(*b).or_default() += c;
        }
    }

    /// The value at quantile `q` (0..=1), in milliseconds, accurate to the
    /// bucket width (≈1.6%); `None` when empty. The maximum is exact.
    pub fn quantile_ms(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        if q >= 1.0 {
            return Some(self.max_ms);
        }
        let rank = ((q * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (b, c) in &self.buckets {
            seen += c;
            if seen >= rank {
                return Some(bucket_floor(*b).min(self.max_ms));
            }
        }
        Some(self.max_ms)
    }

    /// Number of events with lateness in `[lo_ms, hi_ms)` (bucket-accurate).
    pub fn count_between_ms(&self, lo_ms: u64, hi_ms: u64) -> u64 {
        self.buckets
            .iter()
            .filter(|(b, _)| {
                let v = bucket_floor(**b);
                v >= lo_ms && v < hi_ms
            })
            .map(|(_, c)| c)
            .sum()
    }

    /// p50, p90, p99 and max, for summaries.
    pub fn summary(&self) -> Option<LatenessSummary> {
        Some(LatenessSummary {
            p50_ms: self.quantile_ms(0.50)?,
            p90_ms: self.quantile_ms(0.90)?,
            p99_ms: self.quantile_ms(0.99)?,
            max_ms: self.max_ms,
        })
    }
}

/// A dense, allocation-free-per-value recorder for hot loops; turn it into
/// a [`LatenessHistogram`] with [`LatenessRecorder::finish`].
#[derive(Debug, Clone)]
pub struct LatenessRecorder {
    counts: Vec<u64>,
    ahead: u64,
    max_ms: u64,
}

impl Default for LatenessRecorder {
    fn default() -> Self {
        LatenessRecorder {
            // Enough buckets for lateness up to 2^63 ms.
            counts: vec![0; (LINEAR + (63 - 7 + 1) * SUB) as usize],
            ahead: 0,
            max_ms: 0,
        }
    }
}

impl LatenessRecorder {
    #[inline]
    pub fn record_micros(&mut self, lateness_us: i64) {
        if lateness_us < 0 {
            self.ahead += 1;
        }
        let ms = (lateness_us.max(0) / 1000) as u64;
        self.max_ms = self.max_ms.max(ms);
        self.counts[bucket_of(ms) as usize] += 1;
    }

    pub fn finish(&self) -> LatenessHistogram {
        let buckets: BTreeMap<u32, u64> = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, c)| **c > 0)
            .map(|(b, c)| (b as u32, *c))
            .collect();
        LatenessHistogram {
            count: buckets.values().sum(),
            ahead: self.ahead,
            max_ms: self.max_ms,
            buckets,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LatenessSummary {
    pub p50_ms: u64,
    pub p90_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_round_trip_within_two_percent() {
        for v in [
            0u64,
            1,
            127,
            128,
            129,
            1000,
            59_999,
            3_600_000,
            86_400_000 * 30,
        ] {
            let f = bucket_floor(bucket_of(v));
            assert!(f <= v, "{v} -> {f}");
            assert!((v - f) as f64 <= v as f64 * 0.016 + 1.0, "{v} -> {f}");
        }
        let mut prev = 0;
        for b in 0..2000 {
            let f = bucket_floor(b);
            assert!(b == 0 || f > prev);
            assert_eq!(bucket_of(f), b);
            prev = f;
        }
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let mut h = LatenessHistogram::default();
        for s in 1..=100i64 {
            h.record_micros(s * 60_000_000); // 1..100 minutes
        }
        h.record_micros(-5_000_000);
        let q = |p| h.quantile_ms(p).unwrap() as f64 / 60_000.0;
        assert!((q(0.5) - 50.0).abs() < 1.0, "{}", q(0.5));
        assert!((q(0.9) - 90.0).abs() < 1.5, "{}", q(0.9));
        assert_eq!(h.max_ms, 100 * 60_000);
        assert_eq!(h.ahead, 1);
        assert_eq!(h.count, 101);
        let mut r = LatenessRecorder::default();
        for s in 1..=100i64 {
            r.record_micros(s * 60_000_000);
        }
        r.record_micros(-5_000_000);
        r.record_micros(i64::MAX);
        let mut f = r.finish();
        assert_eq!(f.count, 102);
        f.buckets.remove(&bucket_of(i64::MAX as u64 / 1000));
        f.count -= 1;
        f.max_ms = h.max_ms;
        assert_eq!(f, h);
        let mut a = LatenessHistogram::default();
        a.merge(&h);
        a.merge(&h);
        assert_eq!(a.count, 202);
        assert_eq!(a.quantile_ms(0.5), h.quantile_ms(0.5));
        assert_eq!(h.count_between_ms(0, 3_600_000), 61);
    }
}
