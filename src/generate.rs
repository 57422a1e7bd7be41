//! A deterministic generator of realistic arrival batches, for benchmarks
//! and property tests, with an independent truth file.
//!
//! The same `(seed, events, days, users)` always produces byte-identical
//! files. The generator counts what it wrote (valid events per partition,
//! bad lines per reason, re-sends, late events) in `truth.json`, so tests
//! compare evlake against numbers evlake did not compute.
//!
//! Every case of the input contract appears: sessions crossing midnight,
//! mobile events queued offline for hours or days, exact re-sends, re-sends
//! of an id under another user (id conflicts), every
//! kind of malformed line, UTC offsets, epoch milliseconds, sub-microsecond
//! digits, field aliases, unknown fields, CRLF endings, a BOM, ledger
//! events with corrections, cart adds and removes, profile/address changes,
//! and late events that bridge (merge) two sessions.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::time::{self, MICROS_PER_DAY, MICROS_PER_SECOND};

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub events: u64,
    pub seed: u64,
    pub days: u32,
    pub users: u64,
    /// First event day, as microseconds at UTC midnight.
    pub start: i64,
    /// Share of lines that are malformed (spread over every reason).
    pub bad_rate: f64,
    /// Share of mobile events that arrive late.
    pub late_rate: f64,
}

/// SplitMix64: tiny, fast and good enough for test data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo).max(1) as u64) as i64
    }
    fn chance(&mut self, p: f64) -> bool {
        ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct BatchTruth {
    pub file: String,
    pub processing_time: String,
    pub lines: u64,
    pub events: u64,
    pub empty_lines: u64,
    pub quarantined: BTreeMap<String, u64>,
    /// Valid events per event_date in this batch.
    pub partitions: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct PartitionTruth {
    /// Bronze rows expected (re-sends included).
    pub events: u64,
    /// Distinct event ids (what silver keeps).
    pub distinct_event_ids: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub lines: u64,
    pub events: u64,
    pub empty_lines: u64,
    pub quarantined: BTreeMap<String, u64>,
    /// Re-sends included in `events`, those with other content too.
    pub resends: u64,
    /// Of `resends`, copies of an event with other content on its date:
    /// the same `event_id` and time under another user (an id reused by
    /// another client). Silver keeps the first copy.
    pub id_conflicts: u64,
    pub late_events: u64,
    pub days_late_events: u64,
    pub session_bridges: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Truth {
    pub seed: u64,
    pub events_requested: u64,
    pub days: u32,
    pub users: u64,
    pub batches: Vec<BatchTruth>,
    pub partitions: BTreeMap<String, PartitionTruth>,
    pub totals: Totals,
}

/// One line to write into a batch, with what the truth should say about it.
struct Line {
    text: Vec<u8>,
    kind: LineKind,
}

enum LineKind {
    Event { event_id: String, date: String },
    Bad(&'static str),
    Empty,
}

const EVENT_TYPES: &[(&str, u64)] = &[
    ("page_view", 50),
    ("search", 12),
    ("add_to_cart", 10),
    ("remove_from_cart", 3),
    ("purchase", 6),
    ("signup", 2),
    ("profile_updated", 1),
    ("address_changed", 2),
    ("deposit", 5),
    ("withdrawal", 4),
    ("correction", 1),
];

const PAGES: &[&str] = &[
    "/",
    "/search",
    "/product",
    "/cart",
    "/checkout",
    "/account",
    "/help",
];
const QUERIES: &[&str] = &[
    "running shoes",
    "rain jacket",
    "usb-c cable",
    "coffee grinder",
    "desk lamp",
];
const CITIES: &[&str] = &["Berlin", "Lisbon", "Austin", "Osaka", "Nairobi", "Lyon"];

struct Gen {
    rng: Rng,
    next_id: u64,
    /// Each user's latest ledger event id (what a correction corrects).
    ledger: std::collections::HashMap<u64, String>,
}

impl Gen {
    fn event_id(&mut self) -> String {
        self.next_id += 1;
        let a = self.rng.next();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            (a >> 32) as u32,
            (a >> 16) as u16,
            self.next_id & 0xfff,
            (a as u16) | 0x8000,
            self.next_id
        )
    }

    fn money(&mut self, lo: i64, hi: i64) -> (i64, String) {
        let cents = self.rng.range(lo * 100, hi * 100);
        (cents, format!("{}.{:02}", cents / 100, cents % 100))
    }

    fn amount_json(&mut self, text: &str) -> String {
        if self.rng.chance(0.3) {
            format!("\"{text}\"")
        } else {
            text.to_string()
        }
    }

    fn properties(&mut self, etype: &str, user: u64) -> String {
        let r = &mut self.rng;
        match etype {
            "search" => {
                let q = QUERIES[r.below(QUERIES.len() as u64) as usize];
                format!(r#"{{"query_text":"{q}","result_count":{}}}"#, r.below(200))
            }
            "add_to_cart" | "remove_from_cart" => format!(
                r#"{{"product_id":"p{}","quantity":{}}}"#,
                r.below(500),
                1 + r.below(3)
            ),
            "purchase" => {
                let order = r.next() % 1_000_000_000;
                let product = r.below(500);
                let (_, text) = self.money(1, 500);
                let amount = self.amount_json(&text);
                format!(
                    r#"{{"order_id":"o{order}","amount":{amount},"currency":"EUR","product_id":"p{product}"}}"#
                )
            }
            "signup" => {
                let plan = ["free", "pro", "team"][r.below(3) as usize];
                let referrer = ["ads", "friend", "search", "newsletter"][r.below(4) as usize];
                format!(r#"{{"plan":"{plan}","referrer":"{referrer}"}}"#)
            }
            "address_changed" => {
                let city = CITIES[r.below(CITIES.len() as u64) as usize];
                format!(
                    r#"{{"street":"{} Main St","city":"{city}"}}"#,
                    1 + r.below(300)
                )
            }
            "profile_updated" => {
                let plan = ["free", "pro", "team"][r.below(3) as usize];
                format!(r#"{{"display_name":"user {user}","plan":"{plan}"}}"#)
            }
            "deposit" | "withdrawal" => {
                let (_, text) = self.money(5, 900);
                let amount = self.amount_json(&text);
                format!(r#"{{"account_id":"acct-{user}","amount":{amount},"currency":"EUR"}}"#)
            }
            "correction" => {
                // Mostly the user's latest deposit or withdrawal; 1 in 50
                // (and a user with none yet) an id no event has, which
                // `state` reports as a problem.
                let target = match self.ledger.get(&user) {
                    Some(id) if !self.rng.chance(0.02) => id.clone(),
                    _ => format!("unknown-{}", self.rng.below(1_000_000)),
                };
                let (cents, _) = self.money(1, 50);
                let sign = if self.rng.chance(0.5) { "-" } else { "" };
                format!(
                    r#"{{"account_id":"acct-{user}","corrects_event_id":"{target}","amount_delta":{sign}{}.{:02}}}"#,
                    cents / 100,
                    cents % 100
                )
            }
            _ => "{}".to_string(),
        }
    }

    /// A timestamp field in one of the accepted spellings.
    fn timestamp_field(&mut self, us: i64) -> String {
        let key = match self.rng.below(20) {
            0 => "timestamp_utc",
            1 => "timestamp",
            _ => "event_timestamp",
        };
        let roll = self.rng.below(100);
        let value = if roll < 10 {
            // epoch milliseconds (loses the sub-ms part, so round the truth)
            format!("{}", us.div_euclid(1000))
        } else if roll < 22 {
            let offsets = [120i64, -300, 330, 60, -480, 540];
            let off = offsets[self.rng.below(offsets.len() as u64) as usize];
            let local = us + off * 60 * MICROS_PER_SECOND;
            let t = chrono::DateTime::from_timestamp_micros(local).expect("in range");
            let sign = if off < 0 { '-' } else { '+' };
            format!(
                "\"{}{sign}{:02}:{:02}\"",
                t.format("%Y-%m-%dT%H:%M:%S%.3f"),
                off.abs() / 60,
                off.abs() % 60
            )
        } else if roll < 27 {
            let t = chrono::DateTime::from_timestamp_micros(us).expect("in range");
            format!("\"{}789Z\"", t.format("%Y-%m-%dT%H:%M:%S%.6f"))
        } else {
            format!("\"{}\"", time::format_micros(us - us.rem_euclid(1000)))
        };
        format!("\"{key}\":{value}")
    }

    fn event_line(
        &mut self,
        user: u64,
        us: i64,
        etype: &str,
        mobile: bool,
    ) -> (String, String, i64) {
        let id = self.event_id();
        // Timestamps are written at millisecond precision, so the truth
        // date uses the truncated instant.
        let us = us - us.rem_euclid(1000);
        let ts = self.timestamp_field(us);
        let props = self.properties(etype, user);
        if matches!(etype, "deposit" | "withdrawal") {
            self.ledger.insert(user, id.clone());
        }
        let source = if mobile {
            if self.rng.chance(0.5) {
                "ios"
            } else {
                "android"
            }
        } else {
            "web"
        };
        let user_key = if self.rng.chance(0.05) {
            "actor_id"
        } else {
            "user_id"
        };
        let props_key = if self.rng.chance(0.03) {
            "payload"
        } else {
            "properties"
        };
        let page = PAGES[self.rng.below(PAGES.len() as u64) as usize];
        let mut line = format!(
            r#"{{"event_id":"{id}","event_type":"{etype}",{ts},"{user_key}":"u{user}","session_id":"c{user}-{}","page_url":"https://shop.example.com{page}","source_system":"{source}","{props_key}":{props}"#,
            us / (4 * 3600 * MICROS_PER_SECOND)
        );
        if self.rng.chance(0.05) {
            line.push_str(r#","app_version":"5.4.1","experiment":{"id":"exp-7","arm":"b"}"#);
        }
        line.push('}');
        (line, id, us)
    }

    fn bad_line(&mut self, us: i64) -> (String, &'static str) {
        let id = self.event_id();
        let ts = time::format_micros(us - us.rem_euclid(1000));
        match self.rng.below(10) {
            0 => (
                format!(
                    r#"{{"event_id":"{id}","event_type":"page_view","event_timestamp":"{ts}","user_id":"u1""#
                ),
                "invalid_json",
            ),
            1 => (
                format!(
                    r#"{{"event_id":"{id}","event_type":"page_view","event_timestamp":"{ts}"}}"#
                ),
                "missing_field",
            ),
            2 => (
                format!(
                    r#"{{"event_id":null,"event_type":"page_view","event_timestamp":"{ts}","user_id":"u2"}}"#
                ),
                "missing_field",
            ),
            3 => (
                format!(
                    r#"{{"event_id":"{id}","event_type":"page_view","event_timestamp":"{ts}","user_id":12345}}"#
                ),
                "invalid_type",
            ),
            4 => {
                let bad = if self.rng.chance(0.5) {
                    "yesterday"
                } else {
                    "2024-13-45T25:61:00Z"
                };
                (
                    format!(
                        r#"{{"event_id":"{id}","event_type":"page_view","event_timestamp":"{bad}","user_id":"u3"}}"#
                    ),
                    "invalid_timestamp",
                )
            }
            5 => (
                format!(
                    r#"{{"event_id":"{id}","event_type":"page_view","event_timestamp":"{}","user_id":"u4"}}"#,
                    ts.trim_end_matches('Z')
                ),
                "timestamp_without_offset",
            ),
            6 => (
                format!(
                    r#"{{"event_id":"{id}","event_type":"page_view","event_timestamp":"{ts}","user_id":"u5","actor_id":"u6"}}"#
                ),
                "conflicting_fields",
            ),
            7 => (
                // Replaced by invalid UTF-8 bytes when written.
                format!(
                    r#"{{"event_id":"{id}","event_type":"page_view","event_timestamp":"{ts}","user_id":"u7","page_url":"INVALID_UTF8"}}"#
                ),
                "invalid_utf8",
            ),
            8 => (
                // Epoch seconds where the contract says milliseconds.
                format!(
                    r#"{{"event_id":"{id}","event_type":"page_view","event_timestamp":{},"user_id":"u8"}}"#,
                    us.div_euclid(MICROS_PER_SECOND)
                ),
                "timestamp_too_old",
            ),
            _ => ("[\"not\",\"an\",\"object\"]".to_string(), "not_an_object"),
        }
    }
}

/// Processing time of batch `b`: 01:00 UTC the day after its event day.
fn batch_processing_time(opts: &GenerateOptions, b: u32) -> i64 {
    opts.start + (b as i64 + 1) * MICROS_PER_DAY + 3600 * MICROS_PER_SECOND
}

/// The name of batch `b` (0-based) in `out/batches/`.
fn batch_name(b: u32) -> String {
    format!("batch-{:04}.jsonl", b + 1)
}

/// Refuse to write into a `batches/` holding an input file (one `ingest
/// DIR` would read) other than the `days` files this run writes (it
/// overwrites those): a leftover of an earlier, longer run
/// (`batch-0031.jsonl` after `--days 30`) would be ingested with the new
/// batches, and `truth.json` would not count it.
fn refuse_leftovers(batch_dir: &Path, days: u32) -> Result<()> {
    let ours: HashSet<String> = (0..days).map(batch_name).collect();
    let mut others = Vec::new();
    for entry in std::fs::read_dir(batch_dir)
        .with_context(|| format!("failed to list `{}`", batch_dir.display()))?
    {
        let name = entry?.file_name().to_string_lossy().into_owned();
        // (Ingest reads only input names, and no hidden file.)
        if crate::ingest::input::is_input_name(&name) && !ours.contains(&name) {
            others.push(name);
        }
    }
    others.sort();
    if let Some(first) = others.first() {
        return Err(crate::error::Failure::Usage(format!(
            "`{}` holds {} input file(s) this run does not write ({}{}): they would be ingested \
             with its batches, which truth.json counts alone; remove them, or use another --out",
            batch_dir.display(),
            others.len(),
            crate::report::escape_controls(first, &[]),
            if others.len() > 1 { ", ..." } else { "" }
        ))
        .into());
    }
    Ok(())
}

/// Generate `out/batches/batch-NNNN.jsonl` and `out/truth.json`.
pub fn generate(out: &Path, opts: &GenerateOptions) -> Result<Truth> {
    let batch_dir = out.join("batches");
    std::fs::create_dir_all(&batch_dir)
        .with_context(|| format!("failed to create `{}`", batch_dir.display()))?;
    let days = opts.days.max(1);
    refuse_leftovers(&batch_dir, days)?;
    let mut g = Gen {
        rng: Rng(opts.seed ^ 0x5eed_1e55),
        next_id: 0,
        ledger: Default::default(),
    };
    let mut batches: Vec<Vec<Line>> = (0..days).map(|_| Vec::new()).collect();
    let mut truth = Truth {
        seed: opts.seed,
        events_requested: opts.events,
        days,
        users: opts.users,
        ..Truth::default()
    };
    let last = days - 1;
    let mut produced = 0u64;
    let push_event = |batches: &mut Vec<Vec<Line>>, b: u32, text: String, id: String, us: i64| {
        batches[b as usize].push(Line {
            text: text.into_bytes(),
            kind: LineKind::Event {
                event_id: id,
                date: time::format_date32(time::date32_of_micros(us)),
            },
        });
    };

    while produced < opts.events {
        let user = g.rng.below(opts.users.max(1));
        let day = g.rng.below(days as u64) as u32;
        let mobile = g.rng.chance(0.4);
        let day_start = opts.start + day as i64 * MICROS_PER_DAY;
        // 8% of sessions start shortly before midnight and cross it.
        let mut t = if g.rng.chance(0.08) {
            day_start + MICROS_PER_DAY - g.rng.range(60, 20 * 60) * MICROS_PER_SECOND
        } else {
            day_start + g.rng.range(0, 86_000) * MICROS_PER_SECOND
        };
        let n = 1 + g.rng.below(12);
        // Lateness of this session's events when it comes from a phone.
        let late_batches = if mobile && g.rng.chance(opts.late_rate) {
            truth.totals.late_events += n;
            if g.rng.chance(0.15) {
                truth.totals.days_late_events += n;
                2 + g.rng.below(3) as u32
            } else {
                1
            }
        } else {
            0
        };
        let mut session_end = t;
        for _ in 0..n {
            if produced >= opts.events {
                break;
            }
            let etype = pick_type(&mut g.rng);
            let (text, id, us) = g.event_line(user, t, etype, mobile);
            let ev_day =
                ((us - opts.start).div_euclid(MICROS_PER_DAY)).clamp(0, last as i64) as u32;
            let b = (ev_day + late_batches).min(last);
            // Exact re-sends: the same bytes again, now or one batch later.
            if g.rng.chance(0.01) {
                let rb = (b + g.rng.below(2) as u32).min(last);
                push_event(&mut batches, rb, text.clone(), id.clone(), us);
                truth.totals.resends += 1;
                produced += 1;
            }
            push_event(&mut batches, b, text.clone(), id.clone(), us);
            produced += 1;
            // An id conflict: the same event_id and time, another user,
            // now or one batch later.
            if opts.users > 1 && produced < opts.events && g.rng.chance(0.002) {
                let other = (user + 1 + g.rng.below(opts.users - 1)) % opts.users;
                let rb = (b + g.rng.below(2) as u32).min(last);
                let key = if text.contains(r#""actor_id":"#) {
                    "actor_id"
                } else {
                    "user_id"
                };
                let copy = text.replacen(
                    &format!(r#""{key}":"u{user}""#),
                    &format!(r#""{key}":"u{other}""#),
                    1,
                );
                assert_ne!(copy, text, "the line names its user");
                push_event(&mut batches, rb, copy, id.clone(), us);
                truth.totals.resends += 1;
                truth.totals.id_conflicts += 1;
                produced += 1;
            }
            session_end = us;
            // Gaps up to 20 minutes, sometimes exactly 30 (same session).
            t = us
                + if g.rng.chance(0.02) {
                    30 * 60 * MICROS_PER_SECOND
                } else {
                    g.rng.range(5, 20 * 60) * MICROS_PER_SECOND
                };
        }
        // Now and then: a second session 31..55 minutes later, and a
        // bridging event in the gap that arrives a batch late, merging them.
        if produced + 2 <= opts.events && g.rng.chance(0.05) {
            let gap = g.rng.range(31 * 60, 55 * 60) * MICROS_PER_SECOND;
            let second = session_end + gap;
            let (text, id, us) = g.event_line(user, second, "page_view", mobile);
            let day2 = ((us - opts.start).div_euclid(MICROS_PER_DAY)).clamp(0, last as i64) as u32;
            push_event(&mut batches, day2, text, id, us);
            let (text, id, us) = g.event_line(user, session_end + gap / 2, "page_view", true);
            let day_b = ((us - opts.start).div_euclid(MICROS_PER_DAY)).clamp(0, last as i64) as u32;
            push_event(&mut batches, (day_b + 1).min(last), text, id, us);
            truth.totals.session_bridges += 1;
            produced += 2;
        }
        // Bad lines and empty lines at the configured rate.
        let bad_budget = n as f64 * opts.bad_rate;
        if g.rng.chance(bad_budget.fract()) || bad_budget >= 1.0 {
            let b = (day + late_batches).min(last);
            if g.rng.chance(0.1) {
                // An event far in the future (a broken device clock): past
                // --max-future even for the last batch's processing time.
                let pt = batch_processing_time(opts, last);
                let (text, id, _) = g.event_line(user, pt + 30 * MICROS_PER_DAY, "page_view", true);
                let _ = id;
                batches[b as usize].push(Line {
                    text: text.into_bytes(),
                    kind: LineKind::Bad("future_timestamp"),
                });
            } else {
                let (text, reason) = g.bad_line(t);
                let mut bytes = text.into_bytes();
                if reason == "invalid_utf8" {
                    let s = String::from_utf8(bytes).expect("ascii");
                    let mut v = Vec::new();
                    let (a, c) = s.split_once("INVALID_UTF8").expect("marker present");
                    v.extend_from_slice(a.as_bytes());
                    v.extend_from_slice(b"caf\xe9 \xff\xfe");
                    v.extend_from_slice(c.as_bytes());
                    bytes = v;
                }
                batches[b as usize].push(Line {
                    text: bytes,
                    kind: LineKind::Bad(reason),
                });
            }
        }
        if g.rng.chance(0.002) {
            let b = (day + late_batches).min(last);
            batches[b as usize].push(Line {
                text: Vec::new(),
                kind: LineKind::Empty,
            });
        }
    }

    let mut ids_per_date: BTreeMap<String, HashSet<String>> = BTreeMap::new();
    for (b, lines) in batches.iter_mut().enumerate() {
        // Shuffle lightly so arrival order is not event order.
        let n = lines.len();
        for i in (1..n).rev() {
            if g.rng.chance(0.3) {
                let j = g.rng.below(i as u64 + 1) as usize;
                lines.swap(i, j);
            }
        }
        let name = batch_name(b as u32);
        let path = batch_dir.join(&name);
        let crlf = b % 5 == 3;
        let bom = b == 0;
        let mut w = BufWriter::with_capacity(
            1 << 20,
            File::create(&path)
                .with_context(|| format!("failed to create `{}`", path.display()))?,
        );
        if bom {
            w.write_all(b"\xEF\xBB\xBF")?;
        }
        let mut bt = BatchTruth {
            file: name,
            processing_time: time::format_micros(batch_processing_time(opts, b as u32)),
            ..BatchTruth::default()
        };
        for line in lines.iter() {
            w.write_all(&line.text)?;
            w.write_all(if crlf { b"\r\n" } else { b"\n" })?;
            bt.lines += 1;
            match &line.kind {
                LineKind::Event { event_id, date } => {
                    bt.events += 1;
                    *bt.partitions.entry(date.clone()).or_default() += 1;
                    let p = truth.partitions.entry(date.clone()).or_default();
                    p.events += 1;
                    ids_per_date
                        .entry(date.clone())
                        .or_default()
                        .insert(event_id.clone());
                }
                LineKind::Bad(reason) => {
                    *bt.quarantined.entry(reason.to_string()).or_default() += 1;
                    *truth
                        .totals
                        .quarantined
                        .entry(reason.to_string())
                        .or_default() += 1;
                }
                LineKind::Empty => bt.empty_lines += 1,
            }
        }
        w.flush()?;
        truth.totals.lines += bt.lines;
        truth.totals.events += bt.events;
        truth.totals.empty_lines += bt.empty_lines;
        truth.batches.push(bt);
    }
    for (date, ids) in ids_per_date {
        truth.partitions.entry(date).or_default().distinct_event_ids = ids.len() as u64;
    }
    let truth_path = out.join("truth.json");
    let mut body = serde_json::to_vec_pretty(&truth)?;
    body.push(b'\n');
    std::fs::write(&truth_path, body)
        .with_context(|| format!("failed to write `{}`", truth_path.display()))?;
    Ok(truth)
}

fn pick_type(rng: &mut Rng) -> &'static str {
    let total: u64 = EVENT_TYPES.iter().map(|(_, w)| w).sum();
    let mut x = rng.below(total);
    for (t, w) in EVENT_TYPES {
        if x < *w {
            return t;
        }
        x -= w;
    }
    "page_view"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leftover_batch_of_an_earlier_run_is_refused_and_ours_are_rewritten() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = |days| GenerateOptions {
            events: 200,
            seed: 3,
            days,
            users: 20,
            start: 1_709_251_200_000_000, // 2024-03-01
            bad_rate: 0.0,
            late_rate: 0.3,
        };
        let first = generate(tmp.path(), &opts(4)).unwrap();
        // The same run again overwrites its own files, byte for byte.
        let again = generate(tmp.path(), &opts(4)).unwrap();
        assert_eq!(
            serde_json::to_string(&first).unwrap(),
            serde_json::to_string(&again).unwrap()
        );
        // A shorter run would leave batch-0003..0004 to be ingested with
        // its own two batches.
        let e = generate(tmp.path(), &opts(2)).unwrap_err();
        match e.downcast_ref::<crate::error::Failure>() {
            Some(crate::error::Failure::Usage(m)) => {
                assert!(
                    m.contains("2 input file(s) this run does not write (batch-0003.jsonl, ...)"),
                    "{m}"
                )
            }
            other => panic!("{other:?}"),
        }
        let truth = || -> serde_json::Value {
            serde_json::from_slice(&std::fs::read(tmp.path().join("truth.json")).unwrap()).unwrap()
        };
        assert_eq!(truth()["days"], 4, "nothing was written");
        // Files ingest would not read are no matter.
        for f in ["batch-0003.jsonl", "batch-0004.jsonl"] {
            std::fs::remove_file(tmp.path().join("batches").join(f)).unwrap();
        }
        std::fs::write(tmp.path().join("batches/.DS_Store"), "").unwrap();
        std::fs::write(tmp.path().join("batches/README.txt"), "").unwrap();
        generate(tmp.path(), &opts(2)).unwrap();
        assert_eq!(truth()["days"], 2);
    }
}
