//! One NDJSON line → one event, or the reason it was rejected.
//!
//! Pure functions over bytes: no I/O here, so every rule of the input
//! contract is unit-tested directly.

use std::borrow::Cow;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::scan::{self, Raw};
use crate::time::{self, NaiveTimestamps, TimestampError};

/// Why a line went to quarantine. The `as_str` names are a contract: they
/// appear in `quarantine/*.jsonl`, run summaries and the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    InvalidUtf8,
    InvalidJson,
    NotAnObject,
    MissingField,
    InvalidType,
    InvalidTimestamp,
    TimestampWithoutOffset,
    ConflictingFields,
    FutureTimestamp,
    TimestampTooOld,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::InvalidUtf8,
        Reason::InvalidJson,
        Reason::NotAnObject,
        Reason::MissingField,
        Reason::InvalidType,
        Reason::InvalidTimestamp,
        Reason::TimestampWithoutOffset,
        Reason::ConflictingFields,
        Reason::FutureTimestamp,
        Reason::TimestampTooOld,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidUtf8 => "invalid_utf8",
            Reason::InvalidJson => "invalid_json",
            Reason::NotAnObject => "not_an_object",
            Reason::MissingField => "missing_field",
            Reason::InvalidType => "invalid_type",
            Reason::InvalidTimestamp => "invalid_timestamp",
            Reason::TimestampWithoutOffset => "timestamp_without_offset",
            Reason::ConflictingFields => "conflicting_fields",
            Reason::FutureTimestamp => "future_timestamp",
            Reason::TimestampTooOld => "timestamp_too_old",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected line: the reason code and a human detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: Reason,
    pub detail: String,
    /// The line is whole JSON text (rejected for what it holds), so a last
    /// line without its newline is not one a writer is still writing.
    pub whole: bool,
}

impl Rejection {
    fn new(reason: Reason, detail: impl Into<String>) -> Self {
        Rejection {
            reason,
            detail: detail.into(),
            whole: false,
        }
    }

    /// This rejection with `hint`, if any, after its detail.
    fn hinted(mut self, hint: Option<String>) -> Self {
        if let Some(hint) = hint {
            self.detail = format!("{}; {hint}", self.detail);
        }
        self
    }
}

/// An accepted event, borrowing from the line where it can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event<'a> {
    pub event_id: Cow<'a, str>,
    pub event_type: Cow<'a, str>,
    pub user_id: Cow<'a, str>,
    /// UTC microseconds since the epoch.
    pub event_timestamp: i64,
    pub client_session_id: Option<Cow<'a, str>>,
    pub page_url: Option<Cow<'a, str>>,
    pub source_system: Option<Cow<'a, str>>,
    /// The `properties` (or `payload`) object, exactly as received.
    pub properties: Option<&'a str>,
    /// Unknown top-level fields as a JSON object, values verbatim.
    pub extra: Option<String>,
}

impl Event<'_> {
    /// What a re-send of this event must repeat to be the same event.
    pub fn content(&self) -> crate::bronze::Content<'_> {
        crate::bronze::Content {
            event_type: &self.event_type,
            user_id: &self.user_id,
            event_timestamp: self.event_timestamp,
            client_session_id: self.client_session_id.as_deref(),
            page_url: self.page_url.as_deref(),
            source_system: self.source_system.as_deref(),
            properties: self.properties,
            extra: self.extra.as_deref(),
        }
    }
}

/// Settings that change how lines are read.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions {
    pub naive_timestamps: NaiveTimestamps,
    /// Events later than this instant (processing time + `--max-future`)
    /// are rejected as `future_timestamp`.
    pub max_event_timestamp: i64,
    /// Events earlier than this instant (`--min-event-time`) are rejected
    /// as `timestamp_too_old`: epoch seconds sent where milliseconds are
    /// expected land in January 1970, a zero timestamp on 1970-01-01.
    pub min_event_timestamp: i64,
    /// A longer line fails the run (`--max-line-bytes`; see
    /// [`crate::error::Failure::LineTooLong`]): checked by the chunk parser.
    pub max_line_bytes: usize,
}

/// The canonical fields and the keys that feed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    EventId,
    EventType,
    EventTimestamp,
    UserId,
    ClientSessionId,
    PageUrl,
    SourceSystem,
    Properties,
}

const SLOTS: usize = 8;

impl Slot {
    fn of_key(key: &str) -> Option<Slot> {
        Some(match key {
            "event_id" => Slot::EventId,
            "event_type" => Slot::EventType,
            "event_timestamp" | "timestamp_utc" | "timestamp" => Slot::EventTimestamp,
            "user_id" | "actor_id" => Slot::UserId,
            "session_id" => Slot::ClientSessionId,
            "page_url" => Slot::PageUrl,
            "source_system" => Slot::SourceSystem,
            "properties" | "payload" => Slot::Properties,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Slot::EventId => "event_id",
            Slot::EventType => "event_type",
            Slot::EventTimestamp => "event_timestamp",
            Slot::UserId => "user_id",
            Slot::ClientSessionId => "session_id",
            Slot::PageUrl => "page_url",
            Slot::SourceSystem => "source_system",
            Slot::Properties => "properties",
        }
    }
}

/// How deep a line's arrays and objects may nest, the line's own object
/// counted (serde_json's default limit). RFC 8259 lets a reader limit it,
/// and readers do: silver's JSON functions (jiter) read nothing of a
/// `properties` nested deeper than 200, so such a line would reach silver
/// with every property NULL and no word said; ingest quarantines it.
pub const MAX_NESTING: usize = 128;

/// A JSON object's members in order: key and raw value text (serde_json's
/// reading, for lines [`super::scan`] leaves to it).
struct Members<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

struct Key<'a>(Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(10));
                while let Some(Key(k)) = map.next_key()? {
                    let v: &'de RawValue = map.next_value()?;
                    out.push((k, v));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A line with a `\uXXXX` escape at `at` that is a surrogate outside a
/// pair (valid JSON syntax, but not Unicode text: a string holding it
/// cannot be decoded, so silver could not read that field), naming the
/// top-level member it is in.
fn unpaired_surrogate(text: &str, at: usize, lead: usize, members: Option<&Members>) -> Rejection {
    let start = text.as_ptr() as usize;
    let member = members.and_then(|m| {
        m.0.iter().find_map(|(key, raw)| {
            let from = raw.get().as_ptr() as usize - start;
            (from..from + raw.get().len())
                .contains(&at)
                .then(|| format!(" in `{key}`"))
        })
    });
    Rejection::new(
        Reason::InvalidJson,
        format!(
            "unpaired surrogate escape `{}`{} at offset {}: not Unicode text (send the \
             character itself, or both halves of its pair, e.g. `\\ud83d\\ude00`)",
            &text[at..at + 6],
            member.unwrap_or_default(),
            lead + at
        ),
    )
}

/// The JSON type of a raw value, from its first byte.
/// A line that begins with NUL bytes: zeros where a file had no text. A
/// log truncated in place under a writer that did not open it to append
/// (logrotate's `copytruncate`) gets them up to where that writer writes
/// next; a crash can leave zero-filled blocks. The detail says so: "expected
/// value at line 1 column 1" did not.
fn zeros_first(text: &str) -> Option<Rejection> {
    let n = text.bytes().take_while(|&b| b == 0).count();
    if n == 0 {
        return None;
    }
    let what = if n == text.len() {
        format!("the line is {n} NUL bytes")
    } else {
        format!("the line begins with {n} NUL bytes, then text at offset {n}")
    };
    Some(Rejection::new(
        Reason::InvalidJson,
        format!(
            "invalid JSON: {what}: zeros where the file had no text, as in a log truncated in \
             place under a writer that does not open it to append (logrotate's \
             `copytruncate`: have the writer append, O_APPEND, or rotate by renaming), or \
             blocks a crash left zero-filled"
        ),
    ))
}

/// A line that is JSON but for what another language writes: strings in
/// single quotes, `NaN` or `Infinity`, or `True`, `False`, `None`, as
/// Python writes a dict with `str()` (or `json.dumps` a float NaN): what
/// it is, at the place serde_json's error `e` names.
fn foreign_syntax(text: &str, e: &serde_json::Error) -> Option<Rejection> {
    let at = text.get(e.column().checked_sub(1)?..)?;
    let word = |w: &str| {
        at.strip_prefix(w)
            .is_some_and(|rest| !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
    };
    let what = if at.starts_with('\'') {
        "a string in single quotes, as Python's `str()` or `print()` of a dict writes it; \
         JSON's strings take double quotes (`json.dumps` writes JSON)"
            .to_string()
    } else if let Some(w) = ["NaN", "Infinity"].into_iter().find(|w| word(w)) {
        format!(
            "`{w}`, which is not JSON (Python's `json.dumps` writes it for a float {w} unless \
             `allow_nan=False`): send null, or the number as a string"
        )
    } else if let Some((w, json)) = [("True", "true"), ("False", "false"), ("None", "null")]
        .into_iter()
        .find(|(w, _)| word(w))
    {
        format!(
            "`{w}`, Python's, for JSON's `{json}` (a dict written with `str()` or `print()`?); \
             `json.dumps` writes JSON"
        )
    } else {
        return None;
    };
    Some(Rejection::new(
        Reason::InvalidJson,
        format!("invalid JSON: {e}: {what}"),
    ))
}

/// A line that is a whole JSON value with more after it (`{...}{...}`,
/// `{...}}`): whole text, not one a writer was cut off writing (a
/// half-written line is the start of a value), so a last line like it
/// without a newline counts as a bad line, not an unfinished one. Objects
/// run together (see [`objects_run_on`]) are records with no line break
/// between them: the whole file is one such line, which the detail says
/// how to split.
fn value_then_more(text: &str, e: &serde_json::Error) -> Option<Rejection> {
    let mut values = serde_json::Deserializer::from_str(text).into_iter::<serde::de::IgnoredAny>();
    values.next()?.ok()?;
    let comma_after = text[values.byte_offset()..].trim_ascii() == ",";
    let detail = match objects_run_on(text.as_bytes()) {
        Some(run) => format!(
            "invalid JSON: {e}: {}; NDJSON is one object per line: `{}` writes that",
            run.what(),
            run.split()
        ),
        None if comma_after => format!(
            "invalid JSON: {e}: a comma after the object, as between a JSON array's elements; \
             NDJSON has none: `sed 's/,[[:space:]]*$//' FILE | evlake ingest -` drops it"
        ),
        None => format!("invalid JSON: {e}"),
    };
    Some(Rejection {
        whole: true,
        ..Rejection::new(Reason::InvalidJson, detail)
    })
}

/// How JSON objects run together on one line are apart (see
/// [`objects_run_on`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOn {
    /// By nothing, or spaces: records written with no delimiter, as
    /// Kinesis Firehose writes them unless told to add one.
    Together,
    /// By carriage returns alone (classic Mac OS line ends), which end no
    /// line of NDJSON.
    CarriageReturns,
}

impl RunOn {
    pub fn what(self) -> &'static str {
        match self {
            RunOn::Together => {
                "JSON objects one after another with no newline between them (as Kinesis \
                 Firehose writes records without a newline delimiter)"
            }
            RunOn::CarriageReturns => {
                "JSON objects separated by carriage returns alone (classic Mac OS line ends)"
            }
        }
    }

    /// The command that writes them one per line.
    pub fn split(self) -> &'static str {
        match self {
            RunOn::Together => "jq -c . FILE",
            RunOn::CarriageReturns => "tr '\\r' '\\n' < FILE",
        }
    }
}

/// If `text` begins with a whole JSON object and another follows it on
/// the same line: how they are apart.
pub fn objects_run_on(text: &[u8]) -> Option<RunOn> {
    let text = text.trim_ascii_start();
    if !text.starts_with(b"{") {
        return None;
    }
    let mut values =
        serde_json::Deserializer::from_slice(text).into_iter::<serde::de::IgnoredAny>();
    values.next()?.ok()?;
    let after = &text[values.byte_offset()..];
    let rest = after.trim_ascii_start();
    if !rest.starts_with(b"{") {
        return None;
    }
    Some(if after[..after.len() - rest.len()].contains(&b'\r') {
        RunOn::CarriageReturns
    } else {
        RunOn::Together
    })
}

/// The event types the built-in SQL reads (typed tables, gold, state
/// models), exactly as it compares them, each with its letters alone
/// (lowercase, no `_`), as [`near_known_type`] compares.
pub const KNOWN_TYPES: [(&str, &str); 10] = [
    ("purchase", "purchase"),
    ("search", "search"),
    ("signup", "signup"),
    ("add_to_cart", "addtocart"),
    ("remove_from_cart", "removefromcart"),
    ("deposit", "deposit"),
    ("withdrawal", "withdrawal"),
    ("correction", "correction"),
    ("profile_updated", "profileupdated"),
    ("address_changed", "addresschanged"),
];

/// The known type (see [`KNOWN_TYPES`]) that `event_type` differs from
/// only in case, spaces or separators (`Purchase`, `purchase `,
/// `addToCart`, `add-to-cart`): silver reads types exactly, so such an
/// event is in `events` but in no typed table, nor in gold's counts.
/// `None` for a known type itself and for any other. (Run on every event:
/// ~12 ns for a type that is neither, in release.)
pub fn near_known_type(event_type: &str) -> Option<&'static str> {
    const MAX: usize = 32;
    if event_type.len() > MAX || KNOWN_TYPES.iter().any(|(t, _)| *t == event_type) {
        return None;
    }
    // Lowercased, without separators.
    let mut key = [0u8; MAX];
    let mut n = 0;
    for b in event_type.bytes() {
        key[n] = b.to_ascii_lowercase();
        n += usize::from(!matches!(b, b'_' | b'-' | b' ' | b'.' | b'\t'));
    }
    let key = &key[..n];
    KNOWN_TYPES
        .iter()
        .find(|(_, letters)| letters.as_bytes() == key)
        .map(|(t, _)| *t)
}

/// If member `key`, of a line without `event_id`, holds the event (an
/// object with an `event_id`, or such an object as a JSON string): how
/// the line wraps it, and the `jq` that unwraps it. Docker's json-file
/// log driver writes each line a container prints as the string `log`;
/// envelopes (EventBridge's `detail`, a queue message's `body`) nest it.
fn wrapped(key: &str, raw: Raw<'_>) -> Option<String> {
    let has_id = |text: &str| {
        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(text)
            .is_ok_and(|m| m.get("event_id").is_some_and(|v| !v.is_null()))
    };
    let path = jq_path(key);
    let jq = |filter: &str, does: &str| {
        if filter.contains('\'') {
            String::new()
        } else {
            format!(": `jq -c '{filter}' FILE` {does}")
        }
    };
    if raw.starts_with('{') {
        return has_id(&raw).then(|| {
            format!(
                "the event is nested in `{key}`, an envelope{}",
                jq(&path, "unwraps it")
            )
        });
    }
    if raw.starts_with('[') {
        // A batch API's payload (`{"batch":[{...},{...}]}`): the events
        // in an array member, told by its first.
        let first = serde_json::from_str::<Vec<&RawValue>>(&raw).ok()?;
        return has_id(first.first()?.get()).then(|| {
            format!(
                "the events are in `{key}`, an array (a batch API's payload){}",
                jq(&format!("{path}[]"), "writes one per line")
            )
        });
    }
    let text = as_str(raw)?;
    (text.trim_start().starts_with('{') && has_id(&text)).then(|| {
        format!(
            "the event is in `{key}` as a JSON string (as Docker's json-file log driver \
             writes a container's output){}",
            jq(&format!("{path} | fromjson"), "unwraps it")
        )
    })
}

/// The jq path of top-level member `key`: `.key` where jq takes it bare,
/// else `.["the key"]`.
fn jq_path(key: &str) -> String {
    if !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        format!(".{key}")
    } else {
        format!(".[{}]", serde_json::Value::from(key))
    }
}

/// For a timestamp (member `key`) written as MongoDB Extended JSON writes
/// a date (`mongoexport`): `{"$date": "2024-03-15T14:30:00Z"}`, or
/// `{"$date": {"$numberLong": "1710513000000"}}`, or `{"$date":
/// 1710513000000}`. What it is, and the `jq` that takes the date out.
fn extended_json_date(key: &str, raw: Raw<'_>) -> Option<String> {
    if !raw.starts_with('{') {
        return None;
    }
    let map = serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&raw).ok()?;
    let date = map.get("$date").filter(|_| map.len() == 1)?;
    let filter = match date {
        serde_json::Value::String(_) | serde_json::Value::Number(_) => r#".["$date"]"#.to_string(),
        serde_json::Value::Object(o) if o.len() == 1 && o.contains_key("$numberLong") => {
            r#"(.["$date"]["$numberLong"] | tonumber)"#.to_string()
        }
        _ => return None,
    };
    let path = jq_path(key);
    let jq = if path.contains('\'') {
        String::new()
    } else {
        format!(": `jq -c '{path} |= {filter}' FILE | evlake ingest -` takes the date out")
    };
    Some(format!(
        "a date as MongoDB Extended JSON writes it (`mongoexport`){jq}"
    ))
}

/// Windows-1252's characters for bytes 0x80 to 0x9F (Latin-1 has
/// control codes there; `None` where Windows-1252 has nothing either).
#[rustfmt::skip]
const WINDOWS_1252_80: [Option<char>; 32] = [
    Some('€'), None, Some('‚'), Some('ƒ'), Some('„'), Some('…'), Some('†'), Some('‡'),
    Some('ˆ'), Some('‰'), Some('Š'), Some('‹'), Some('Œ'), None, Some('Ž'), None,
    None, Some('‘'), Some('’'), Some('“'), Some('”'), Some('•'), Some('–'), Some('—'),
    Some('˜'), Some('™'), Some('š'), Some('›'), Some('œ'), None, Some('ž'), Some('Ÿ'),
];

/// For a line that is not UTF-8 at the error `e`: when it looks like text
/// in a single-byte encoding (all ASCII before a lone byte of 0x80 or
/// more, as Latin-1 or Windows-1252 writes `é`), what that byte is there
/// and the `iconv` that converts the file. Empty otherwise (a UTF-8
/// character cut short is not that).
fn single_byte_text(line: &[u8], e: &std::str::Utf8Error) -> String {
    let at = e.valid_up_to();
    if e.error_len() != Some(1) || !line[..at].is_ascii() {
        return String::new();
    }
    let b = line[at];
    // (Not 0xFE or 0xFF, `þ` and `ÿ`: rare in text, common in binary.)
    let shown = match b {
        0xA0..=0xFD => Some(char::from(b)),
        0x80..=0x9F => WINDOWS_1252_80[usize::from(b - 0x80)],
        _ => None,
    };
    let Some(c) = shown else {
        return String::new();
    };
    let encodings = if b >= 0xA0 {
        "Latin-1 and Windows-1252"
    } else {
        "Windows-1252"
    };
    format!(
        ": byte 0x{b:02X} is `{c}` in {encodings}, not UTF-8: `iconv -f WINDOWS-1252 -t UTF-8 \
         FILE | evlake ingest -` converts the file"
    )
}

/// For `properties` (member `key`) sent as a string that holds a JSON
/// object (a serializer that wrote it with `JSON.stringify`, a CSV export
/// converted to JSON): that it is one, and the `jq` that parses it.
/// Stored as the string, silver's JSON functions would read nothing of it.
fn stringified_object(key: &str, raw: Raw<'_>) -> Option<String> {
    let text = as_str(raw)?;
    serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text).ok()?;
    // (`key` is `properties` or `payload`, which jq takes bare.)
    Some(format!(
        "it is a JSON object written as a string: `jq -c '.{key} |= fromjson' FILE | evlake \
         ingest -` parses it"
    ))
}

/// Whether `line` is the header line of a CSV (or TSV, or `;`- or
/// `|`-separated) file of events: two or more fields, one of them
/// `event_id`, quoted or not. Its name for the format, if so.
fn csv_header(line: &str) -> Option<&'static str> {
    if line.starts_with(['{', '[']) {
        return None;
    }
    [(',', "CSV"), ('\t', "TSV"), (';', "CSV"), ('|', "CSV")]
        .into_iter()
        .find(|&(sep, _)| {
            let fields: Vec<&str> = line
                .split(sep)
                .map(|f| f.trim().trim_matches('"'))
                .collect();
            fields.len() >= 2 && fields.iter().any(|f| f.eq_ignore_ascii_case("event_id"))
        })
        .map(|(_, name)| name)
}

/// What to do with a CSV or TSV file of events.
pub const CSV_TOOL: &str = "convert it to NDJSON first, e.g. `duckdb -c \"COPY (FROM \
                            read_csv('FILE')) TO '/dev/stdout' (FORMAT json)\" | evlake ingest -`";

fn json_type(raw: &str) -> &'static str {
    match raw.as_bytes().first() {
        Some(b'"') => "string",
        Some(b'{') => "object",
        Some(b'[') => "array",
        Some(b't' | b'f') => "boolean",
        Some(b'n') => "null",
        _ => "number",
    }
}

fn is_null(raw: &str) -> bool {
    raw == "null"
}

/// Decode a JSON string value, borrowing when it has no escapes.
fn as_str(raw: Raw<'_>) -> Option<Cow<'_, str>> {
    let t = raw.text;
    let b = t.as_bytes();
    if b.first() != Some(&b'"') {
        return None;
    }
    if !raw.escaped {
        return Some(Cow::Borrowed(&t[1..t.len() - 1]));
    }
    serde_json::from_str::<String>(t).ok().map(Cow::Owned)
}

fn type_error(slot: Slot, expected: &str, raw: &str) -> Rejection {
    let mut shown = raw.to_string();
    if shown.len() > 60 {
        let cut = (0..=57)
            .rev()
            .find(|&i| shown.is_char_boundary(i))
            .unwrap_or(0);
        shown.truncate(cut);
        shown.push_str("...");
    }
    Rejection::new(
        Reason::InvalidType,
        format!(
            "`{}` must be {expected}, got {} {shown}",
            slot.name(),
            json_type(raw)
        ),
    )
}

fn required_str<'a>(slot: Slot, raw: Option<Raw<'a>>) -> Result<Cow<'a, str>, Rejection> {
    let raw = raw.ok_or_else(|| {
        let aliases = match slot {
            Slot::UserId => " (or `actor_id`)",
            Slot::EventTimestamp => " (or `timestamp_utc`, `timestamp`)",
            _ => "",
        };
        Rejection::new(
            Reason::MissingField,
            format!(
                "required field `{}`{aliases} is missing or null",
                slot.name()
            ),
        )
    })?;
    let s = as_str(raw).ok_or_else(|| type_error(slot, "a string", &raw))?;
    if s.chars().all(char::is_whitespace) {
        return Err(Rejection::new(
            Reason::MissingField,
            format!("required field `{}` is empty", slot.name()),
        ));
    }
    Ok(s)
}

fn optional_str<'a>(slot: Slot, raw: Option<Raw<'a>>) -> Result<Option<Cow<'a, str>>, Rejection> {
    match raw {
        None => Ok(None),
        Some(raw) => as_str(raw)
            .map(Some)
            .ok_or_else(|| type_error(slot, "a string or null", &raw)),
    }
}

fn timestamp(raw: Option<Raw<'_>>, naive: NaiveTimestamps) -> Result<i64, Rejection> {
    let slot = Slot::EventTimestamp;
    let raw = raw.ok_or_else(|| {
        Rejection::new(
            Reason::MissingField,
            "required field `event_timestamp` (or `timestamp_utc`, `timestamp`) is missing or null",
        )
    })?;
    let text = raw.text;
    if let Some(s) = as_str(raw) {
        return time::parse_rfc3339_micros(&s, naive).map_err(|e| match e {
            TimestampError::WithoutOffset => Rejection::new(
                Reason::TimestampWithoutOffset,
                format!("`event_timestamp` {text} has no UTC offset (add `Z` or `+HH:MM`, or pass --naive-timestamps utc)"),
            ),
            TimestampError::Invalid(_) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                // BigQuery's JSON export writes an INT64 as a string: GA4's
                // `event_timestamp` is epoch microseconds so.
                let unit = epoch_digits(&s).map_or_else(String::new, |(unit, us)| {
                    format!(
                        ", which as epoch {unit} is {} (send that, or {} as a JSON integer, \
                         unquoted, which evlake reads as epoch milliseconds)",
                        time::format_micros(us),
                        us.div_euclid(1_000)
                    )
                });
                Rejection::new(
                    Reason::InvalidTimestamp,
                    format!(
                        "`event_timestamp` {text} is not an RFC 3339 timestamp: digits in a \
                         string{}",
                        if unit.is_empty() {
                            " (epoch milliseconds are accepted as a JSON integer, unquoted)"
                        } else {
                            &unit
                        }
                    ),
                )
            }
            // Python's `str(time.time())`, as a string.
            TimestampError::Invalid(_) if fractional_epoch_seconds(&s).is_some() => {
                let us = fractional_epoch_seconds(&s).unwrap_or_default();
                Rejection::new(
                    Reason::InvalidTimestamp,
                    format!(
                        "`event_timestamp` {text} is not an RFC 3339 timestamp: epoch seconds \
                         with a fraction in a string, which is {} (send that, or {} as a JSON \
                         integer, unquoted, which evlake reads as epoch milliseconds)",
                        time::format_micros(us),
                        us.div_euclid(1_000)
                    ),
                )
            }
            TimestampError::Invalid(why) => Rejection::new(
                Reason::InvalidTimestamp,
                format!("`event_timestamp` {text} is not an RFC 3339 timestamp: {why}"),
            ),
            TimestampError::LeapSecond => Rejection::new(
                Reason::InvalidTimestamp,
                format!(
                    "`event_timestamp` {text} is a leap second, which a UTC timestamp cannot \
                     hold (send {}:59.999999 or the next second)",
                    // The hour and minute as sent: a leap second is 23:59:60
                    // in UTC, but 05:29:60 at +05:30, and a clock that wrote
                    // 10:00:60 is wrong by its own minute.
                    text.trim_matches('"').get(11..16).unwrap_or("23:59")
                ),
            ),
        });
    }
    if json_type(text) == "number" {
        let ms: i64 = text.parse().map_err(|_| {
            let mut r = type_error(
                slot,
                "an RFC 3339 string or integer epoch milliseconds",
                &raw,
            );
            if let Some(us) = fractional_epoch_seconds(text) {
                r.detail = format!(
                    "{} (epoch seconds with a fraction, as Python's `time.time()` gives? That \
                     is `{}`: send it so, or as integer milliseconds, {})",
                    r.detail,
                    time::format_micros(us),
                    us.div_euclid(1_000)
                );
            }
            r
        })?;
        return time::epoch_millis_to_micros(ms).ok_or_else(|| {
            // Microseconds or nanoseconds of this era are out of range as
            // milliseconds: say which they would be.
            let era = |n: i64| time::epoch_millis_to_micros(n).is_some_and(|us| us > 0);
            let hint = if era(ms / 1_000) {
                " (an integer is epoch milliseconds: were these microseconds?)"
            } else if era(ms / 1_000_000) {
                " (an integer is epoch milliseconds: were these nanoseconds?)"
            } else {
                ""
            };
            Rejection::new(
                Reason::InvalidTimestamp,
                format!("`event_timestamp` {ms} is out of range for epoch milliseconds{hint}"),
            )
        });
    }
    Err(type_error(
        slot,
        "an RFC 3339 string or integer epoch milliseconds",
        &raw,
    ))
}

/// Every top-level name [`Slot::of_key`] reads.
const FIELD_NAMES: [&str; 12] = [
    "event_id",
    "event_type",
    "event_timestamp",
    "timestamp_utc",
    "timestamp",
    "user_id",
    "actor_id",
    "session_id",
    "page_url",
    "source_system",
    "properties",
    "payload",
];

/// For a line missing required field `missing`, when one of its unknown
/// members (`extra`) is that field's name in another spelling
/// (`eventId`, `EVENT_ID`, `event-id`): every such member, what to
/// rename it, and the `jq` that does.
fn misnamed(missing: Slot, extra: &[(Cow<'_, str>, Raw<'_>)]) -> Option<String> {
    let plain = |k: &str| -> String {
        k.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let renames: Vec<(&str, &str)> = extra
        .iter()
        .filter_map(|(key, _)| {
            let name = FIELD_NAMES.iter().find(|f| plain(f) == plain(key))?;
            Some((key.as_ref(), *name))
        })
        .take(FIELD_NAMES.len())
        .collect();
    renames
        .iter()
        .any(|(_, name)| Slot::of_key(name) == Some(missing))
        .then(|| {
            let list: Vec<String> = renames
                .iter()
                .map(|(key, name)| format!("`{key}` to `{name}`"))
                .collect();
            let map: Vec<String> = renames
                .iter()
                .map(|(key, name)| format!("{}:\"{name}\"", serde_json::Value::from(*key)))
                .collect();
            let jq = format!("with_entries(.key |= ({{{}}}[.] // .))", map.join(","));
            let jq = if jq.contains('\'') {
                String::new()
            } else {
                format!(": `jq -c '{jq}' FILE | evlake ingest -` does")
            };
            format!("field names are exact: rename {}{jq}", list.join(", "))
        })
}

/// A known producer's export format: its name, how its lines are told
/// (members that must be there, not null), and the `jq` that maps its
/// fields onto evlake's, keeping the rest (in `extra`).
/// And what to check after.
const PRODUCERS: [(&str, &[&[&str]], &str, &str); 5] = [
    (
        "a Segment (or RudderStack) event",
        &[
            &["messageId"],
            &["event", "type"],
            &["userId", "anonymousId"],
        ],
        ". + {event_id: .messageId, event_type: (.event // .type), \
         user_id: (.userId // .anonymousId)}",
        "",
    ),
    (
        "an Amplitude export's event",
        &[&["event_type"], &["event_time"], &["uuid", "$insert_id"]],
        // Amplitude's own `event_id` and `session_id` are numbers.
        ". + {event_id: (.uuid // .[\"$insert_id\"]), event_timestamp: (.event_time + \"Z\"), \
         user_id: (.user_id // .device_id), session_id: (.session_id | \
         if type == \"number\" and . != -1 then tostring else null end), \
         properties: .event_properties} | del(.event_properties)",
        "",
    ),
    (
        // Mixpanel's id, time and user are members of `properties`.
        "a Mixpanel export's event",
        &[
            &["event"],
            &["properties/$insert_id"],
            &["properties/time"],
            &["properties/distinct_id"],
        ],
        "{event_id: .properties[\"$insert_id\"], event_type: .event, \
         event_timestamp: (.properties.time | if . < 100000000000 then . * 1000 else . end \
         | floor), user_id: .properties.distinct_id, properties}",
        " (a project created before 2023 has its `time` in the project's time zone, not UTC: \
         add the offset)",
    ),
    (
        // GA4's BigQuery export: no event id (one is made of what a re-sent
        // line repeats), the time in µs in a string, parameters as a list.
        "a GA4 (BigQuery export) event",
        &[&["event_name"], &["event_timestamp"], &["user_pseudo_id"]],
        "{event_id: ([.user_pseudo_id, .event_timestamp, .event_name, \
         .event_bundle_sequence_id, .batch_event_index] | map(. // \"\" | tostring) | \
         join(\"-\")), event_type: .event_name, event_timestamp: (.event_timestamp | tonumber \
         / 1000 | floor), user_id: (.user_id // .user_pseudo_id), session_id: \
         ([.event_params[]? | select(.key == \"ga_session_id\") | .value.int_value][0]), \
         properties: ([.event_params[]? | {key, value: (.value | .string_value // .int_value \
         // .double_value // .float_value)}] | from_entries)}",
        " (GA4 has no event id: this one is made of the user, the time, the name and the \
         event's place in its bundle, the same in a re-sent line; the time is kept to the \
         millisecond)",
    ),
    (
        "a Snowplow enriched event",
        &[&["event_id"], &["event_name"], &["collector_tstamp"]],
        ". + {event_type: .event_name, event_timestamp: (.derived_tstamp // .collector_tstamp), \
         user_id: (.user_id // .domain_userid)}",
        "",
    ),
];

/// For a line missing a required field (or with one of another type),
/// whose members (`members`) are
/// those of a known producer's export (Segment's spec, Amplitude's,
/// Mixpanel's or GA4's export, Snowplow's enriched event): whose, and the `jq`
/// that maps them onto evlake's fields.
fn producer(members: &[(&str, Raw<'_>)]) -> Option<String> {
    // Whether member `path` (`properties/time`: `time` of the object
    // `properties`) is there and not null.
    let present = |path: &str| -> Option<()> {
        let mut keys = path.split('/');
        let top = keys.next()?;
        let (_, raw) = members
            .iter()
            .find(|(k, raw)| *k == top && raw.text != "null")?;
        let mut keys = keys.peekable();
        if keys.peek().is_none() {
            return Some(());
        }
        let value = serde_json::from_str::<serde_json::Value>(raw).ok()?;
        keys.try_fold(&value, |v, k| v.get(k).filter(|v| !v.is_null()))
            .map(|_| ())
    };
    let (name, _, filter, check) = PRODUCERS.iter().find(|(_, told, _, _)| {
        told.iter()
            .all(|any| any.iter().any(|path| present(path).is_some()))
    })?;
    Some(format!(
        "these are the fields of {name}: `jq -c '{filter}' FILE | evlake ingest -` maps them \
         onto evlake's{check}"
    ))
}

/// Epoch seconds of the era in which a number is taken for an instant
/// in a hint: 1990-01-01 to 2100-01-01.
const ERA_SECONDS: std::ops::Range<i64> = 631_152_000..4_102_444_800;

/// The instant in microseconds that number text `text` (`1710513000.5`)
/// stands for as epoch seconds with a fraction, if it is one of this era
/// (1990 to 2100): digits past the microsecond are dropped.
fn fractional_epoch_seconds(text: &str) -> Option<i64> {
    let (secs, frac) = text.split_once('.')?;
    let all_digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(secs) || !all_digits(frac) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    if !ERA_SECONDS.contains(&secs) {
        return None;
    }
    let micros = frac
        .bytes()
        .chain(std::iter::repeat(b'0'))
        .take(6)
        .fold(0, |n, b| n * 10 + i64::from(b - b'0'));
    Some(secs * time::MICROS_PER_SECOND + micros)
}

/// The unit (seconds, milliseconds, microseconds or nanoseconds) in which
/// the digits `digits` are an epoch instant of this era (1990 to 2100),
/// and that instant in microseconds.
fn epoch_digits(digits: &str) -> Option<(&'static str, i64)> {
    let n: i64 = digits.parse().ok()?;
    let era =
        ERA_SECONDS.start * time::MICROS_PER_SECOND..ERA_SECONDS.end * time::MICROS_PER_SECOND;
    [
        ("seconds", n.checked_mul(1_000_000)),
        ("milliseconds", n.checked_mul(1_000)),
        ("microseconds", Some(n)),
        ("nanoseconds", Some(n / 1_000)),
    ]
    .into_iter()
    .find_map(|(unit, us)| us.filter(|us| era.contains(us)).map(|us| (unit, us)))
}

/// Do two values given for the same field (through aliases or a repeated
/// key) mean the same thing?
fn same_value(slot: Slot, a: Raw<'_>, b: Raw<'_>, naive: NaiveTimestamps) -> bool {
    if a.text == b.text {
        return true;
    }
    match slot {
        Slot::EventTimestamp => matches!(
            (timestamp(Some(a), naive), timestamp(Some(b), naive)),
            (Ok(x), Ok(y)) if x == y
        ),
        Slot::Properties => same_json(a.text, b.text),
        _ => matches!((as_str(a), as_str(b)), (Some(x), Some(y)) if x == y),
    }
}

/// Are two JSON texts the same value (spacing and key order aside)?
fn same_json(a: &str, b: &str) -> bool {
    a == b
        || matches!(
            (
                serde_json::from_str::<serde_json::Value>(a),
                serde_json::from_str::<serde_json::Value>(b),
            ),
            (Ok(x), Ok(y)) if x == y
        )
}

/// A key given twice with different values, at `path`.
fn repeated(path: &str, first: &str, second: &str) -> Rejection {
    Rejection::new(
        Reason::ConflictingFields,
        format!(
            "`{path}` is given twice, as {} and as {} (readers differ on which one counts)",
            shorten(first),
            shorten(second)
        ),
    )
}

/// A value's text for a message: long ones cut (at a character boundary).
fn shorten(text: &str) -> Cow<'_, str> {
    const MAX: usize = 60;
    if text.len() <= MAX {
        return Cow::Borrowed(text);
    }
    let cut = (0..=MAX)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    Cow::Owned(format!("{}...", &text[..cut]))
}

/// The first key an object anywhere inside the JSON value `text` (at
/// `path`) repeats with another value. Silver's JSON functions and DuckDB
/// read the first, Python's `json` and serde_json the last: such a line is
/// quarantined rather than read differently by each. The scanner declines
/// every line with a nested repeat, so only serde_json's path looks.
///
/// "First" is what a depth-first walk meets first: the object that opens
/// first among those with a repeat, and in it the first key repeated. The
/// walk is one pass over the text with a stack of its own, not a call per
/// level: a value nested a million levels deep is valid JSON (serde_json
/// reads it as a `RawValue`), and recursing into it overflowed the parse
/// thread's stack and aborted the whole ingest (re-reading each level's
/// text also made it quadratic in the depth). `text` is valid JSON (a
/// `RawValue`'s); anything else gives `None`.
fn repeated_key(text: &str, path: &str) -> Option<Rejection> {
    use std::collections::HashMap;
    use std::collections::hash_map::Entry;
    enum Kind<'a> {
        /// The keys met so far with their first value, and the key of the
        /// member being read.
        Object {
            seen: HashMap<Cow<'a, str>, &'a str>,
            key: Cow<'a, str>,
        },
        /// The index of the item being read.
        Array(usize),
    }
    struct Open<'a> {
        start: usize,
        kind: Kind<'a>,
    }
    let b = text.as_bytes();
    memchr::memchr(b'{', b)?;
    let ws = |mut i: usize| {
        while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        i
    };
    // The end of the string that starts (with its quote) at `i`.
    let string_end = |i: usize| {
        let mut j = i + 1;
        loop {
            j += memchr::memchr2(b'"', b'\\', b.get(j..)?)?;
            if b[j] == b'"' {
                return Some(j + 1);
            }
            j += 2;
        }
    };
    // A member's key at `i` (escapes decoded) and where its value starts.
    let key_at = |i: usize| -> Option<(Cow<'_, str>, usize)> {
        (b.get(i) == Some(&b'"')).then_some(())?;
        let end = string_end(i)?;
        let raw = &text[i..end];
        let key = if raw.contains('\\') {
            Cow::Owned(serde_json::from_str::<String>(raw).ok()?)
        } else {
            Cow::Borrowed(&raw[1..raw.len() - 1])
        };
        let colon = ws(end);
        (b.get(colon) == Some(&b':')).then_some((key, ws(colon + 1)))
    };
    let mut stack: Vec<Open> = Vec::new();
    // The repeat found in the object that opened first, and where it opened.
    let mut found: Option<(usize, Rejection)> = None;
    let mut i = ws(0);
    loop {
        // A value starts at `i`: open a container, or find the value's end.
        let mut start = i;
        let mut end = match *b.get(i)? {
            b'{' | b'[' => {
                let inner = ws(i + 1);
                if b.get(inner) == Some(if b[i] == b'{' { &b'}' } else { &b']' }) {
                    inner + 1
                } else {
                    let kind = if b[i] == b'{' {
                        let (key, value) = key_at(inner)?;
                        i = value;
                        Kind::Object {
                            seen: HashMap::new(),
                            key,
                        }
                    } else {
                        i = inner;
                        Kind::Array(0)
                    };
                    stack.push(Open { start, kind });
                    continue;
                }
            }
            b'"' => string_end(i)?,
            _ => {
                i + b[i..]
                    .iter()
                    .position(|c| matches!(c, b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r'))
                    .unwrap_or(b.len() - i)
            }
        };
        // The value `start..end` is whole: the container it is in takes
        // it, and if that container ends there, it is whole in turn.
        loop {
            let Some(open) = stack.last_mut() else {
                return found.map(|(_, r)| r);
            };
            let mut repeat = None;
            if let Kind::Object { seen, key } = &mut open.kind {
                let value = &text[start..end];
                match seen.entry(key.clone()) {
                    Entry::Vacant(e) => {
                        e.insert(value);
                    }
                    Entry::Occupied(e) => {
                        let earlier = found.as_ref().is_some_and(|(at, _)| *at <= open.start);
                        if !earlier && !same_json(e.get(), value) {
                            repeat = Some((open.start, *e.get(), value));
                        }
                    }
                }
            }
            if let Some((opened, first, value)) = repeat {
                use std::fmt::Write;
                let mut at = path.to_string();
                for o in &stack {
                    let _ = match &o.kind {
                        Kind::Object { key, .. } => write!(at, ".{key}"),
                        Kind::Array(n) => write!(at, "[{n}]"),
                    };
                }
                found = Some((opened, repeated(&at, first, value)));
            }
            let open = stack.last_mut().expect("the container just used");
            let next = ws(end);
            match *b.get(next)? {
                b',' => {
                    match &mut open.kind {
                        Kind::Object { key, .. } => {
                            let (k, value) = key_at(ws(next + 1))?;
                            *key = k;
                            i = value;
                        }
                        Kind::Array(n) => {
                            *n += 1;
                            i = ws(next + 1);
                        }
                    }
                    break;
                }
                b'}' | b']' => {
                    start = open.start;
                    end = next + 1;
                    stack.pop();
                }
                _ => return None,
            }
        }
    }
}

/// A line's members sorted into the canonical fields.
#[derive(Default)]
struct Fields<'a> {
    slots: [Option<(Cow<'a, str>, Raw<'a>)>; SLOTS],
    /// Unknown top-level members, in order.
    extra: Vec<(Cow<'a, str>, Raw<'a>)>,
    /// Where each key of `extra` is, once it holds [`EXTRA_INDEXED`]: a
    /// line may carry many thousands, and a search through `extra` for
    /// each made such a line quadratic (100,000 keys, 1.4 MB, took over
    /// two minutes).
    extra_index: Option<std::collections::HashMap<Cow<'a, str>, usize>>,
    /// The first field given twice with different values.
    conflict: Option<Rejection>,
}

/// How many unknown members a line holds before they are indexed (a few
/// are found faster by a search).
const EXTRA_INDEXED: usize = 16;

impl<'a> Fields<'a> {
    fn add(&mut self, key: Cow<'a, str>, raw: Raw<'a>, naive: NaiveTimestamps) {
        let Some(slot) = Slot::of_key(&key) else {
            let at = if self.extra.len() < EXTRA_INDEXED {
                self.extra.iter().position(|(k, _)| *k == key)
            } else {
                let index = self.extra_index.get_or_insert_with(|| {
                    let keys = self.extra.iter().map(|(k, _)| k.clone());
                    keys.zip(0..).collect()
                });
                index.get(&key).copied()
            };
            match at {
                None => {
                    if let Some(index) = &mut self.extra_index {
                        index.insert(key.clone(), self.extra.len());
                    }
                    self.extra.push((key, raw));
                }
                Some(at) => {
                    let first = self.extra[at].1;
                    if self.conflict.is_none() && !same_json(first.text, raw.text) {
                        self.conflict = Some(repeated(&key, first.text, raw.text));
                    }
                }
            }
            return;
        };
        if is_null(&raw) {
            return;
        }
        match &self.slots[slot as usize] {
            None => self.slots[slot as usize] = Some((key, raw)),
            Some((first_key, first)) => {
                if self.conflict.is_none() && !same_value(slot, *first, raw, naive) {
                    self.conflict = Some(Rejection::new(
                        Reason::ConflictingFields,
                        format!(
                            "`{first_key}` is {} but `{key}` is {}",
                            first.text, raw.text
                        ),
                    ));
                }
            }
        }
    }
}

/// Parse one line (without its line terminator). `Ok(None)` is an empty
/// line, which is skipped and counted rather than quarantined.
pub fn parse_line<'a>(
    bytes: &'a [u8],
    opts: &ParseOptions,
) -> Result<Option<Event<'a>>, Rejection> {
    // Trim ASCII whitespace as bytes (a UTF-8 continuation byte is never
    // ASCII).
    let line = bytes.trim_ascii();
    // A UTF-8 BOM opening a line other than the file's first (whose BOM
    // the read drops): files that each start with one, concatenated
    // (`cat a.jsonl b.jsonl`). It is no part of the JSON.
    let bom = line.starts_with(b"\xEF\xBB\xBF");
    let line = if bom {
        line[3..].trim_ascii_start()
    } else {
        line
    };
    // RFC 7464's record separator (0x1E) before each JSON text, as `jq
    // --seq` and `application/json-seq` write them: no part of the JSON.
    let line = match line {
        [0x1e, rest @ ..] => rest.trim_ascii_start(),
        line => line,
    };
    if line.is_empty() {
        return Ok(None);
    }
    // Most lines take the one-pass scanner, whose members go straight to
    // their fields (it checks UTF-8 as it goes); serde_json reads the rest
    // (and words the errors), once the line is known to be UTF-8.
    let naive = opts.naive_timestamps;
    let mut fields = Fields::default();
    if scan::for_each_member(line, |key, raw| fields.add(key, raw, naive)).is_none() {
        fields = Fields::default();
        // Offsets count from the line as given.
        let lead = line.as_ptr().addr() - bytes.as_ptr().addr();
        let text = std::str::from_utf8(line).map_err(|e| {
            Rejection::new(
                Reason::InvalidUtf8,
                format!(
                    "line is not valid UTF-8 (bad byte at offset {}){}",
                    lead + e.valid_up_to(),
                    single_byte_text(line, &e)
                ),
            )
        })?;
        let members = serde_json::from_str::<Members<'a>>(text);
        if let Some(at) = scan::unpaired_surrogate(line) {
            return Err(unpaired_surrogate(text, at, lead, members.as_ref().ok()));
        }
        let members = match members {
            Ok(m) => m,
            Err(e) => {
                if !text.starts_with('{') && serde_json::from_str::<&RawValue>(text).is_ok() {
                    // Events sent as one JSON array say how to split them.
                    let array_of_objects =
                        text.starts_with('[') && text[1..].trim_ascii_start().starts_with('{');
                    return Err(Rejection::new(
                        Reason::NotAnObject,
                        format!(
                            "line is a JSON {}, not an object{}",
                            json_type(text),
                            if array_of_objects {
                                " (events sent as one array? `jq -c '.[]' FILE` writes \
                                 one per line)"
                            } else {
                                ""
                            }
                        ),
                    ));
                }
                // The first line of a pretty-printed document (or array).
                if text == "{" || text == "[" {
                    return Err(Rejection::new(
                        Reason::InvalidJson,
                        format!(
                            "invalid JSON: a lone `{text}`, which opens JSON written over many \
                             lines (pretty-printed); NDJSON is one object per line: \
                             `jq -c {} FILE` writes that",
                            if text == "[" { "'.[]'" } else { "." }
                        ),
                    ));
                }
                if let Some(format) = csv_header(text) {
                    return Err(Rejection::new(
                        Reason::InvalidJson,
                        format!(
                            "invalid JSON: the header line of a {format} file, which evlake \
                             does not read (it reads NDJSON, one JSON event object per line): \
                             {CSV_TOOL}"
                        ),
                    ));
                }
                if let Some(rejection) = value_then_more(text, &e) {
                    return Err(rejection);
                }
                if let Some(rejection) = foreign_syntax(text, &e) {
                    return Err(rejection);
                }
                if let Some(rejection) = zeros_first(text) {
                    return Err(rejection);
                }
                return Err(Rejection::new(
                    Reason::InvalidJson,
                    format!("invalid JSON: {e}"),
                ));
            }
        };
        // (The scanner takes lines up to its own, lower, depth.)
        let depth = scan::nesting(line);
        if depth > MAX_NESTING {
            return Err(Rejection {
                whole: true,
                ..Rejection::new(
                    Reason::InvalidJson,
                    format!(
                        "invalid JSON: nested {depth} levels deep, more than the {MAX_NESTING} \
                         evlake reads (silver's JSON functions would read none of its \
                         `properties`)"
                    ),
                )
            });
        }
        for (key, raw) in members.0 {
            fields.add(key, Raw::new(raw.get()), naive);
        }
        if fields.conflict.is_none() {
            let nested = fields.slots.iter().flatten().chain(&fields.extra);
            fields.conflict = nested
                .into_iter()
                .find_map(|(key, raw)| repeated_key(raw.text, key));
        }
    }
    if let Some(conflict) = fields.conflict {
        return Err(conflict);
    }
    let Fields { slots, extra, .. } = fields;
    let get = |slot: Slot| slots[slot as usize].as_ref().map(|(_, raw)| *raw);

    // A required field missing under its name may be there under another
    // spelling (`eventId`).
    // Or the line is a known producer's, whose fields have other names.
    let renamed = |slot: Slot| {
        let (slots, extra) = (&slots, &extra);
        move |r: Rejection| {
            let hint = match r.reason {
                Reason::MissingField => misnamed(slot, extra),
                Reason::InvalidType => None,
                _ => return r,
            };
            let hint = hint.or_else(|| {
                let members: Vec<(&str, Raw)> = slots
                    .iter()
                    .flatten()
                    .chain(extra)
                    .map(|(key, raw)| (key.as_ref(), *raw))
                    .collect();
                producer(&members)
            });
            r.hinted(hint)
        }
    };
    let event_id = required_str(Slot::EventId, get(Slot::EventId)).map_err(|r| {
        let mut members = slots.iter().flatten().chain(&extra);
        let wrapped = members.find_map(|(k, raw)| wrapped(k, *raw));
        renamed(Slot::EventId)(r.hinted(wrapped))
    })?;
    let event_type =
        required_str(Slot::EventType, get(Slot::EventType)).map_err(renamed(Slot::EventType))?;
    let user_id = required_str(Slot::UserId, get(Slot::UserId)).map_err(renamed(Slot::UserId))?;
    let timestamp_raw = get(Slot::EventTimestamp);
    let event_timestamp = timestamp(timestamp_raw, naive).map_err(|r| {
        let date = slots[Slot::EventTimestamp as usize]
            .as_ref()
            .and_then(|(key, raw)| extended_json_date(key, *raw));
        renamed(Slot::EventTimestamp)(r).hinted(date)
    })?;
    let client_session_id = optional_str(Slot::ClientSessionId, get(Slot::ClientSessionId))?;
    let page_url = optional_str(Slot::PageUrl, get(Slot::PageUrl))?;
    let source_system = optional_str(Slot::SourceSystem, get(Slot::SourceSystem))?;
    let properties = match &slots[Slot::Properties as usize] {
        None => None,
        Some((_, raw)) if raw.starts_with('{') => Some(raw.text),
        Some((key, raw)) => {
            return Err(type_error(Slot::Properties, "an object or null", raw)
                .hinted(stringified_object(key, *raw)));
        }
    };
    if event_timestamp > opts.max_event_timestamp {
        return Err(Rejection::new(
            Reason::FutureTimestamp,
            format!(
                "`event_timestamp` {} is more than --max-future ahead of the processing time (limit {})",
                time::format_micros(event_timestamp),
                time::format_micros(opts.max_event_timestamp)
            ),
        ));
    }
    if event_timestamp < opts.min_event_timestamp {
        let integer = timestamp_raw.is_some_and(|r| !r.text.starts_with('"'));
        return Err(Rejection::new(
            Reason::TimestampTooOld,
            format!(
                "`event_timestamp` {} is before --min-event-time {}{}",
                time::format_micros(event_timestamp),
                time::format_micros(opts.min_event_timestamp),
                if integer {
                    " (an integer is epoch milliseconds: were these seconds?)"
                } else {
                    ""
                }
            ),
        ));
    }
    let extra = (!extra.is_empty()).then(|| {
        let mut s = String::with_capacity(64);
        s.push('{');
        for (i, (k, v)) in extra.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&serde_json::to_string(k.as_ref()).expect("string serializes"));
            s.push(':');
            s.push_str(v.text);
        }
        s.push('}');
        s
    });
    Ok(Some(Event {
        event_id,
        event_type,
        user_id,
        event_timestamp,
        client_session_id,
        page_url,
        source_system,
        properties,
        extra,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAR_FUTURE: i64 = i64::MAX;

    fn opts() -> ParseOptions {
        ParseOptions {
            naive_timestamps: NaiveTimestamps::Reject,
            max_event_timestamp: FAR_FUTURE,
            min_event_timestamp: i64::MIN,
            max_line_bytes: usize::MAX,
        }
    }

    fn ok(line: &str) -> Event<'_> {
        parse_line(line.as_bytes(), &opts()).unwrap().unwrap()
    }

    fn reason(line: &[u8]) -> Reason {
        parse_line(line, &opts()).unwrap_err().reason
    }

    const GOOD: &str = r#"{"event_id":"e1","event_type":"purchase","event_timestamp":"2024-03-15T14:30:00.123+02:00","user_id":"u42","page_url":"https://shop.example.com/checkout","source_system":"ios","properties":{"order_id":"o9","amount":19.99,"currency":"EUR"}}"#;

    #[test]
    fn parses_the_contract_example() {
        let e = ok(GOOD);
        assert_eq!(e.event_id, "e1");
        assert_eq!(e.event_type, "purchase");
        assert_eq!(e.user_id, "u42");
        assert_eq!(
            time::format_micros(e.event_timestamp),
            "2024-03-15T12:30:00.123Z"
        );
        assert_eq!(
            e.page_url.as_deref(),
            Some("https://shop.example.com/checkout")
        );
        assert_eq!(e.source_system.as_deref(), Some("ios"));
        assert_eq!(
            e.properties,
            Some(r#"{"order_id":"o9","amount":19.99,"currency":"EUR"}"#)
        );
        assert_eq!(e.extra, None);
        assert_eq!(e.client_session_id, None);
    }

    #[test]
    fn properties_keep_their_token_text() {
        let e = ok(
            r#"{"event_id":"e","event_type":"t","timestamp":"2024-03-15T00:00:00Z","actor_id":"u","payload":{ "amount" : 19.990, "big": 12345678901234567890.12 }}"#,
        );
        assert_eq!(
            e.properties,
            Some(r#"{ "amount" : 19.990, "big": 12345678901234567890.12 }"#)
        );
        assert_eq!(e.user_id, "u");
    }

    #[test]
    fn aliases_and_epoch_millis() {
        let e = ok(
            r#"{"event_id":"e","event_type":"t","timestamp_utc":1710513000123,"actor_id":"u","session_id":"c1"}"#,
        );
        assert_eq!(
            time::format_micros(e.event_timestamp),
            "2024-03-15T14:30:00.123Z"
        );
        assert_eq!(e.client_session_id.as_deref(), Some("c1"));
    }

    #[test]
    fn same_value_through_two_aliases_is_fine() {
        let e = ok(
            r#"{"event_id":"e","event_type":"t","timestamp":"2024-03-15T14:30:00Z","event_timestamp":"2024-03-15T16:30:00+02:00","user_id":"u","actor_id":"u"}"#,
        );
        assert_eq!(e.user_id, "u");
    }

    #[test]
    fn unknown_fields_are_kept_in_extra() {
        let e = ok(
            r#"{"event_id":"e","event_type":"t","timestamp":"2024-03-15T14:30:00Z","user_id":"u","app_version":"1.2.3","geo":{"cc":"DE"},"we\"ird":1}"#,
        );
        assert_eq!(
            e.extra.as_deref(),
            Some(r#"{"app_version":"1.2.3","geo":{"cc":"DE"},"we\"ird":1}"#)
        );
        let v: serde_json::Value = serde_json::from_str(e.extra.as_deref().unwrap()).unwrap();
        assert_eq!(v["geo"]["cc"], "DE");
    }

    /// Past a few unknown members they are found through an index: a
    /// repeat far down a wide line is still caught, an equal one kept
    /// once, and `extra` keeps the order the line gave (on either path:
    /// the scanner's, and serde_json's for a line it declines).
    #[test]
    fn a_line_with_thousands_of_unknown_fields_keeps_them_in_order() {
        let n = 5_000;
        for declined in ["", r#","properties":{"a":{"b":1,"b":2}}"#] {
            let keys: String = (0..n).map(|i| format!(r#","k{i}":{i}"#)).collect();
            let line = |more: &str| {
                format!(
                    r#"{{"event_id":"e","event_type":"t","timestamp":"2024-03-15T14:30:00Z","user_id":"u"{keys}{more}}}"#
                )
            };
            if declined.is_empty() {
                let text = line(r#","k4000":4000"#);
                let e = ok(&text);
                assert_eq!(
                    e.extra.as_deref(),
                    Some(format!("{{{}}}", &keys[1..]).as_str())
                );
            }
            let r = parse_line(
                line(&format!(r#","k4000":1{declined}"#)).as_bytes(),
                &opts(),
            )
            .unwrap_err();
            assert_eq!(r.reason, Reason::ConflictingFields);
            assert!(
                r.detail
                    .starts_with("`k4000` is given twice, as 4000 and as 1"),
                "{}",
                r.detail
            );
        }
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let e = ok(
            r#"{"event_id":"e\u0031","event_type":"t","timestamp":"2024-03-15T14:30:00Z","user_id":"caf\u00e9"}"#,
        );
        assert_eq!(e.event_id, "e1");
        assert_eq!(e.user_id, "café");
    }

    /// Text that is not ASCII, unescaped, in values and keys, stays as
    /// sent; the same bytes cut inside a character are not UTF-8.
    #[test]
    fn raw_non_ascii_text_is_kept_and_a_cut_character_is_not_utf8() {
        let line = "{\"event_id\":\"\u{e9}1\",\"event_type\":\"vue\",\"timestamp\":\"2024-03-15T14:30:00Z\",\
                    \"user_id\":\"\u{4e2d}\u{1F600}\",\"page_url\":\"https://x/\u{444}\",\
                    \"properties\":{\"n\u{e9}\":\"caf\u{e9}\"},\"cl\u{e9}\":\"\u{e9}t\u{e9}\"}";
        let e = ok(line);
        assert_eq!(e.event_id, "\u{e9}1");
        assert_eq!(e.user_id, "\u{4e2d}\u{1F600}");
        assert_eq!(e.page_url.as_deref(), Some("https://x/\u{444}"));
        assert_eq!(e.properties, Some("{\"n\u{e9}\":\"caf\u{e9}\"}"));
        assert_eq!(e.extra.as_deref(), Some("{\"cl\u{e9}\":\"\u{e9}t\u{e9}\"}"));
        // The emoji's last byte dropped, inside the string.
        let emoji = line.find('\u{1F600}').unwrap();
        let mut cut = line.as_bytes().to_vec();
        cut.remove(emoji + 3);
        let r = parse_line(&cut, &opts()).unwrap_err();
        assert_eq!(r.reason, Reason::InvalidUtf8);
        assert_eq!(
            r.detail,
            format!("line is not valid UTF-8 (bad byte at offset {emoji})")
        );
    }

    #[test]
    fn a_bom_opening_a_line_is_no_part_of_it() {
        // Files that each start with a BOM, concatenated.
        let line = format!("\u{feff}{GOOD}");
        let e = ok(&line);
        assert_eq!(e.event_id, "e1");
        assert_eq!(parse_line("\u{feff}\r".as_bytes(), &opts()), Ok(None));
        // Offsets still count from the line as given.
        let mut bad = b" \xEF\xBB\xBF {\"event_id\": \"".to_vec();
        let at = bad.len();
        bad.extend_from_slice(b"\xff\"}");
        let r = parse_line(&bad, &opts()).unwrap_err();
        assert_eq!(r.reason, Reason::InvalidUtf8);
        assert_eq!(
            r.detail,
            format!("line is not valid UTF-8 (bad byte at offset {at})")
        );
    }

    /// JSON text sequences (RFC 7464, `jq --seq`): a record separator
    /// before each object.
    #[test]
    fn a_record_separator_opening_a_line_is_no_part_of_it() {
        let line = format!("\u{1e}{GOOD}");
        let e = ok(&line);
        assert_eq!(e.event_id, "e1");
        assert_eq!(parse_line(b"\x1e\r", &opts()), Ok(None));
        assert_eq!(reason(b"\x1e\x1e{}"), Reason::InvalidJson);
    }

    #[test]
    fn empty_and_whitespace_lines_are_skipped() {
        assert_eq!(parse_line(b"", &opts()), Ok(None));
        assert_eq!(parse_line(b"   \r", &opts()), Ok(None));
    }

    #[test]
    fn every_quarantine_reason() {
        assert_eq!(reason(b"{\"event_id\": \"e\", \xff}"), Reason::InvalidUtf8);
        assert_eq!(reason(br#"{"event_id":"e","#), Reason::InvalidJson);
        assert_eq!(reason(br#"not json"#), Reason::InvalidJson);
        assert_eq!(reason(br#"{"a":1} {"b":2}"#), Reason::InvalidJson);
        assert_eq!(reason(br#"[1,2]"#), Reason::NotAnObject);
        // Events as a JSON array, or pretty-printed: told how to split them.
        let detail = |line: &[u8]| parse_line(line, &opts()).unwrap_err().detail;
        assert!(
            detail(br#"[ {"event_id":"e"} ]"#).ends_with("`jq -c '.[]' FILE` writes one per line)")
        );
        assert_eq!(detail(b"[1,2]"), "line is a JSON array, not an object");
        assert!(detail(b"{ \r").contains("a lone `{`, which opens JSON written over many lines"));
        assert!(detail(b"[").contains("`jq -c '.[]' FILE`"));
        assert_eq!(reason(br#""text""#), Reason::NotAnObject);
        assert_eq!(
            reason(br#"{"event_type":"t","timestamp":"2024-03-15T14:30:00Z","user_id":"u"}"#),
            Reason::MissingField
        );
        assert_eq!(
            reason(br#"{"event_id":null,"event_type":"t","timestamp":"2024-03-15T14:30:00Z","user_id":"u"}"#),
            Reason::MissingField
        );
        assert_eq!(
            reason(br#"{"event_id":"","event_type":"t","timestamp":"2024-03-15T14:30:00Z","user_id":"u"}"#),
            Reason::MissingField
        );
        assert_eq!(
            reason(br#"{"event_id":"e","event_type":"t","user_id":"u"}"#),
            Reason::MissingField
        );
        assert_eq!(
            reason(br#"{"event_id":42,"event_type":"t","timestamp":"2024-03-15T14:30:00Z","user_id":"u"}"#),
            Reason::InvalidType
        );
        assert_eq!(
            reason(br#"{"event_id":"e","event_type":"t","timestamp":"2024-03-15T14:30:00Z","user_id":"u","properties":"{}"}"#),
            Reason::InvalidType
        );
        assert_eq!(
            reason(br#"{"event_id":"e","event_type":"t","timestamp":1.5,"user_id":"u"}"#),
            Reason::InvalidType
        );
        assert_eq!(
            reason(br#"{"event_id":"e","event_type":"t","timestamp":"2024-03-15T14:30:00Z","user_id":"u","page_url":7}"#),
            Reason::InvalidType
        );
        assert_eq!(
            reason(br#"{"event_id":"e","event_type":"t","timestamp":"yesterday","user_id":"u"}"#),
            Reason::InvalidTimestamp
        );
        assert_eq!(
            reason(br#"{"event_id":"e","event_type":"t","timestamp":"2024-13-45T25:61:00Z","user_id":"u"}"#),
            Reason::InvalidTimestamp
        );
        assert_eq!(
            reason(br#"{"event_id":"e","event_type":"t","timestamp":"2024-03-15T14:30:00","user_id":"u"}"#),
            Reason::TimestampWithoutOffset
        );
        // A leap second is RFC 3339, but no UTC timestamp holds it: said so.
        let leap = parse_line(
            br#"{"event_id":"e","event_type":"t","timestamp":"2016-12-31T23:59:60Z","user_id":"u"}"#,
            &opts(),
        )
        .unwrap_err();
        assert_eq!(leap.reason, Reason::InvalidTimestamp);
        assert!(leap.detail.contains("is a leap second"), "{}", leap.detail);
        assert!(
            leap.detail.contains("send 23:59:59.999999"),
            "{}",
            leap.detail
        );
        // The fix names the minute that was sent, not always 23:59.
        let local = parse_line(
            br#"{"event_id":"e","event_type":"t","timestamp":"2016-12-31T05:29:60+05:30","user_id":"u"}"#,
            &opts(),
        )
        .unwrap_err();
        assert!(
            local.detail.contains("send 05:29:59.999999"),
            "{}",
            local.detail
        );
        assert_eq!(
            reason(br#"{"event_id":"e","event_type":"t","timestamp":"2024-03-15T14:30:00Z","user_id":"u","actor_id":"v"}"#),
            Reason::ConflictingFields
        );
        assert_eq!(
            reason(br#"{"event_id":"e","event_type":"t","timestamp":"2024-03-15T14:30:00Z","event_timestamp":"2024-03-15T14:31:00Z","user_id":"u"}"#),
            Reason::ConflictingFields
        );
        let future = ParseOptions {
            naive_timestamps: NaiveTimestamps::Reject,
            max_event_timestamp: 0,
            min_event_timestamp: i64::MIN,
            max_line_bytes: usize::MAX,
        };
        assert_eq!(
            parse_line(br#"{"event_id":"e","event_type":"t","timestamp":"2024-03-15T14:30:00Z","user_id":"u"}"#, &future)
                .unwrap_err()
                .reason,
            Reason::FutureTimestamp
        );
    }

    #[test]
    fn integer_timestamps_out_of_range_say_which_unit_they_may_be() {
        let detail = |ts: &str| {
            let line = format!(
                r#"{{"event_id":"e","event_type":"t","event_timestamp":{ts},"user_id":"u"}}"#
            );
            let e = parse_line(line.as_bytes(), &opts()).unwrap_err();
            assert_eq!(e.reason, Reason::InvalidTimestamp, "{ts}");
            e.detail
        };
        assert!(
            detail("1710513000123456").ends_with("milliseconds: were these microseconds?)"),
            "{}",
            detail("1710513000123456")
        );
        assert!(detail("1710513000123456789").ends_with("were these nanoseconds?)"));
        // Out of range in any unit: no guess.
        assert!(detail("-1710513000123456").ends_with("out of range for epoch milliseconds"));
    }

    #[test]
    fn timestamps_before_the_minimum_are_too_old() {
        let o = ParseOptions {
            min_event_timestamp: crate::ingest::DEFAULT_MIN_EVENT_TIME,
            ..opts()
        };
        // Epoch seconds sent as milliseconds: 1970-01-20. The detail says so.
        let seconds = parse_line(
            br#"{"event_id":"e","event_type":"t","event_timestamp":1710513000,"user_id":"u"}"#,
            &o,
        )
        .unwrap_err();
        assert_eq!(seconds.reason, Reason::TimestampTooOld);
        assert!(
            seconds.detail.contains("1970-01-20T19:08:33Z")
                && seconds.detail.contains("were these seconds?"),
            "{}",
            seconds.detail
        );
        let zero = parse_line(
            br#"{"event_id":"e","event_type":"t","timestamp":"1999-12-31T23:59:59.999999Z","user_id":"u"}"#,
            &o,
        )
        .unwrap_err();
        assert_eq!(zero.reason, Reason::TimestampTooOld);
        assert!(!zero.detail.contains("seconds?"), "{}", zero.detail);
        // The minimum itself, and milliseconds, are accepted.
        for ts in [r#""2000-01-01T00:00:00Z""#, "1710513000123"] {
            let line = format!(
                r#"{{"event_id":"e","event_type":"t","event_timestamp":{ts},"user_id":"u"}}"#
            );
            assert!(parse_line(line.as_bytes(), &o).unwrap().is_some(), "{ts}");
        }
    }

    #[test]
    fn quoted_epoch_milliseconds_say_to_send_an_integer() {
        let e = parse_line(
            br#"{"event_id":"e","event_type":"t","event_timestamp":"1710513000123","user_id":"u"}"#,
            &opts(),
        )
        .unwrap_err();
        assert_eq!(e.reason, Reason::InvalidTimestamp);
        assert!(e.detail.contains("as a JSON integer"), "{}", e.detail);
    }

    #[test]
    fn min_event_time_reads_an_instant_a_date_or_none() {
        use crate::ingest::{format_min_event_time, parse_min_event_time};
        assert_eq!(
            parse_min_event_time("2000-01-01"),
            Ok(crate::ingest::DEFAULT_MIN_EVENT_TIME)
        );
        assert_eq!(
            parse_min_event_time("2000-01-01T02:00:00+02:00"),
            Ok(crate::ingest::DEFAULT_MIN_EVENT_TIME)
        );
        assert_eq!(parse_min_event_time("none"), Ok(i64::MIN));
        assert!(parse_min_event_time("last year").is_err());
        assert!(parse_min_event_time("2000-13-01").is_err());
        for t in ["none", "1990-06-01T12:00:00Z"] {
            assert_eq!(format_min_event_time(parse_min_event_time(t).unwrap()), t);
        }
    }

    #[test]
    fn naive_timestamps_can_be_read_as_utc() {
        let o = ParseOptions {
            naive_timestamps: NaiveTimestamps::Utc,
            max_event_timestamp: FAR_FUTURE,
            min_event_timestamp: i64::MIN,
            max_line_bytes: usize::MAX,
        };
        let e = parse_line(
            br#"{"event_id":"e","event_type":"t","timestamp":"2024-03-15T14:30:00","user_id":"u"}"#,
            &o,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            time::format_micros(e.event_timestamp),
            "2024-03-15T14:30:00Z"
        );
    }

    #[test]
    fn messages_name_the_field() {
        let r = parse_line(br#"{"event_id":"e","event_type":"t","timestamp":"2024-03-15T14:30:00Z","user_id":["u"]}"#, &opts()).unwrap_err();
        assert_eq!(r.detail, "`user_id` must be a string, got array [\"u\"]");
    }

    /// A `\uXXXX` surrogate outside a pair is valid JSON syntax but not
    /// text: no reader can decode the string (silver's JSON functions
    /// would read the whole `properties` as NULL), so the line is
    /// quarantined, naming the escape, the member and its offset. A pair,
    /// and an escaped backslash before `u`, are fine.
    #[test]
    fn an_unpaired_surrogate_is_quarantined_where_it_is() {
        let head =
            r#"{"event_id":"e","event_type":"t","timestamp":"2024-03-15T14:30:00Z","user_id":"u""#;
        for (tail, escape, member) in [
            (
                r#","properties":{"currency":"\ud800"}}"#,
                r"\ud800",
                " in `properties`",
            ),
            (
                r#","properties":{"\udc00":"x","a":1}}"#,
                r"\udc00",
                " in `properties`",
            ),
            (
                r#","properties":{"a":"\ud83d\u0041"}}"#,
                r"\ud83d",
                " in `properties`",
            ),
            (r#","note":["\uDFFF"]}"#, r"\uDFFF", " in `note`"),
            (r#","page_url":"x\ud800"}"#, r"\ud800", " in `page_url`"),
            (r#","k\ud800":1}"#, r"\ud800", ""),
        ] {
            let line = format!("  {head}{tail}");
            let r = parse_line(line.as_bytes(), &opts()).unwrap_err();
            assert_eq!(r.reason, Reason::InvalidJson, "{}", r.detail);
            let at = line.find(escape).unwrap();
            assert_eq!(
                r.detail,
                format!(
                    "unpaired surrogate escape `{escape}`{member} at offset {at}: not Unicode \
                     text (send the character itself, or both halves of its pair, e.g. \
                     `\\ud83d\\ude00`)"
                )
            );
        }
        let r = parse_line(
            br#"{"event_id":"\ud800","event_type":"t","timestamp":"2024-03-15T14:30:00Z","user_id":"u"}"#,
            &opts(),
        )
        .unwrap_err();
        assert!(
            r.detail
                .starts_with(r"unpaired surrogate escape `\ud800` in `event_id` at offset 13:"),
            "{}",
            r.detail
        );
        for tail in [
            r#","properties":{"a":"\ud83d\ude00","b":"C:\\udc00"}}"#,
            r#","properties":{"\uD83D\uDE00":"\u00e9"}}"#,
        ] {
            let line = format!("{head}{tail}");
            let e = parse_line(line.as_bytes(), &opts()).unwrap().unwrap();
            assert!(e.properties.unwrap().starts_with(r#"{""#));
        }
    }

    /// The scanner hands members to their fields as it reads them: a
    /// conflict it saw still loses to invalid JSON later in the line, and
    /// the first conflict is the one reported.
    #[test]
    fn invalid_json_outranks_a_conflict_and_the_first_conflict_is_named() {
        let line = br#"{"event_id":"a","event_id":"b","event_type":"t","timestamp":"2024-03-15T00:00:00Z","user_id":"u",}"#;
        assert_eq!(reason(line), Reason::InvalidJson);
        let r = parse_line(
            br#"{"event_id":"a","event_type":"t","event_id":"b","event_type":"v","timestamp":"2024-03-15T00:00:00Z","user_id":"u"}"#,
            &opts(),
        )
        .unwrap_err();
        assert_eq!(r.reason, Reason::ConflictingFields);
        assert_eq!(r.detail, r#"`event_id` is "a" but `event_id` is "b""#);
    }

    #[test]
    fn a_key_repeated_with_another_value_anywhere_is_a_conflict() {
        let with = |more: &str| {
            format!(
                r#"{{"event_id":"e","event_type":"t","timestamp":"2024-03-15T14:30:00Z","user_id":"u"{more}}}"#
            )
        };
        for (more, detail) in [
            (
                r#","properties":{"amount":"1.00","amount":"2.00"}"#,
                r#"`properties.amount` is given twice, as "1.00" and as "2.00""#,
            ),
            (
                r#","properties":{"a":[1,{"b":{"c":1,"c":{"x":1}}}]}"#,
                r#"`properties.a[1].b.c` is given twice, as 1 and as {"x":1}"#,
            ),
            (
                r#","ctx":{"o":{"k":1}},"ctx":{"o":{"k":2}}"#,
                r#"`ctx` is given twice, as {"o":{"k":1}} and as {"o":{"k":2}}"#,
            ),
            // Escaped keys are decoded first: `\u0061` is `a`.
            (
                r#","\u0070roperties":{"\u0061":1,"a":2}"#,
                r#"`properties.a` is given twice, as 1 and as 2"#,
            ),
        ] {
            let r = parse_line(with(more).as_bytes(), &opts()).unwrap_err();
            assert_eq!(r.reason, Reason::ConflictingFields, "{more}");
            assert!(
                r.detail.starts_with(detail)
                    && r.detail.ends_with("(readers differ on which one counts)"),
                "{more}: {}",
                r.detail
            );
        }
        // The same value twice (spacing and key order aside) means one
        // thing: kept as sent.
        for more in [
            r#","properties":{"amount":"1.00","amount":"1.00"}"#,
            r#","properties":{"o":{"a":1,"b":2},"o":{ "b":2, "a":1 }}"#,
            r#","ctx":1,"ctx":1"#,
        ] {
            let line = with(more);
            assert!(parse_line(line.as_bytes(), &opts()).is_ok(), "{more}");
        }
        // A long value is cut in the message.
        let long = "x".repeat(100);
        let r = parse_line(
            with(&format!(r#","properties":{{"a":"{long}","a":1}}"#)).as_bytes(),
            &opts(),
        )
        .unwrap_err();
        assert!(
            r.detail.contains(&format!(r#"as "{}... and"#, &long[..59])),
            "{}",
            r.detail
        );
    }

    /// JSON nested deeper than evlake reads is quarantined, however deep,
    /// in one pass: a million levels used to overflow the parse thread's
    /// stack and abort the ingest. Brackets inside strings do not count.
    #[test]
    fn a_line_nested_deeper_than_evlake_reads_is_quarantined() {
        // `properties` is level 2 (the line is 1), then `n` arrays.
        let line = |n: usize| {
            format!(
                r#"{{"event_id":"e","event_type":"t","timestamp":"2024-03-15T14:30:00Z","user_id":"u","properties":{{"a":{}1{}}}}}"#,
                "[".repeat(n),
                "]".repeat(n)
            )
        };
        assert!(parse_line(line(MAX_NESTING - 2).as_bytes(), &opts()).is_ok());
        for n in [MAX_NESTING - 1, 1_000_000] {
            let r = parse_line(line(n).as_bytes(), &opts()).unwrap_err();
            assert_eq!(r.reason, Reason::InvalidJson);
            assert!(
                r.detail.starts_with(&format!(
                    "invalid JSON: nested {} levels deep, more than the 128",
                    n + 2
                )),
                "{}",
                r.detail
            );
        }
        let quoted = format!(
            r#"{{"event_id":"e","event_type":"t","timestamp":"2024-03-15T14:30:00Z","user_id":"u","properties":{{"a":[[[1]]],"s":"{}\"{}"}}}}"#,
            "[".repeat(300),
            "{".repeat(300)
        );
        assert!(parse_line(quoted.as_bytes(), &opts()).is_ok());
    }

    /// The walk for repeated keys keeps a stack of its own: a value nested
    /// far deeper than the line limit is walked without recursion, and the
    /// repeat reported is the one a depth-first walk meets first.
    #[test]
    fn repeated_keys_are_found_at_any_depth_in_depth_first_order() {
        let n = 200_000;
        let deep = format!(
            r#"{{"a":{}{{"k":1,"k":2}}{}}}"#,
            "[".repeat(n),
            "]".repeat(n)
        );
        let r = repeated_key(&deep, "properties").expect("the repeat of k");
        let path = format!(
            "`properties.a{}.k` is given twice, as 1 and as 2",
            "[0]".repeat(n)
        );
        assert!(r.detail.starts_with(&path), "{}", &r.detail[..80]);
        // An object's own repeat comes before those of the values inside
        // it, even when theirs are earlier in the text; among siblings,
        // the earlier; and a repeat with the same value is none.
        for (text, at) in [
            (r#"{"in":{"k":1,"k":2},"z":1,"z":2}"#, "p.z"),
            (r#"[{"x":[{"k":1,"k":2}]},{"y":1,"y":3}]"#, "p[0].x[0].k"),
            (r#"[{"x":[{"k":1,"k":1}]},{"y":1,"y":3}]"#, "p[1].y"),
            (
                r#"{"a" : { "b" : [ 1 , { "c":"}", "c" : "]" } ] } }"#,
                "p.a.b[1].c",
            ),
            (r#"{"\u0061":{},"a":{"b":1}}"#, "p.a"),
        ] {
            let r = repeated_key(text, "p").unwrap_or_else(|| panic!("{text}"));
            assert!(
                r.detail.starts_with(&format!("`{at}` is given twice")),
                "{text}: {}",
                r.detail
            );
        }
        for text in [
            r#"{"a":{"b":1},"a":{ "b" : 1 }}"#,
            r#"[{}, [], {"a":[]}]"#,
            r#""{\"a\":1,\"a\":2}""#,
        ] {
            assert!(repeated_key(text, "p").is_none(), "{text}");
        }
        // Text that is not JSON (never passed in) gives no answer, and no
        // panic.
        for text in [
            r#"{"a":"x\"#,
            r#"{"a""#,
            r#"{"a":{"b":1"#,
            r#"{1:2}"#,
            r#"{"a":1 "a":2}"#,
        ] {
            assert!(repeated_key(text, "p").is_none(), "{text}");
        }
    }

    #[test]
    fn a_bad_byte_is_placed_from_the_start_of_the_line() {
        // Leading whitespace is trimmed before the UTF-8 check; the offset
        // still counts it.
        for (line, at) in [
            (&b"{\"a\":\"\xff\"}"[..], 6),
            (b" \t {\"a\":\"\xff\"}  ", 9),
        ] {
            let r = parse_line(line, &opts()).unwrap_err();
            assert_eq!(r.reason, Reason::InvalidUtf8);
            assert_eq!(
                r.detail,
                format!("line is not valid UTF-8 (bad byte at offset {at})")
            );
        }
    }

    /// Objects run together on a line are one bad line, whole (not one a
    /// writer was cut off writing), and the detail says how to split
    /// them; other text after a whole value is whole too, without it.
    #[test]
    fn objects_run_together_are_whole_and_say_how_to_split_them() {
        let e = r#"{"event_id":"a","event_type":"t","event_timestamp":"2024-03-15T14:30:00Z","user_id":"u"}"#;
        let r = parse_line(format!("{e} {e}").as_bytes(), &opts()).unwrap_err();
        assert_eq!(r.reason, Reason::InvalidJson);
        assert!(r.whole);
        assert!(
            r.detail
                .starts_with("invalid JSON: trailing characters at line 1 column")
                && r.detail
                    .contains("(as Kinesis Firehose writes records without a newline")
                && r.detail.ends_with("`jq -c . FILE` writes that"),
            "{}",
            r.detail
        );
        // Apart by carriage returns alone: a file with classic Mac OS line
        // ends.
        let r = parse_line(format!("{e}\r{e}\r").as_bytes(), &opts()).unwrap_err();
        assert!(
            r.whole
                && r.detail.contains("separated by carriage returns alone")
                && r.detail.ends_with("`tr '\\r' '\\n' < FILE` writes that"),
            "{}",
            r.detail
        );
        let r = parse_line(format!("{e}}}").as_bytes(), &opts()).unwrap_err();
        assert!(r.whole && !r.detail.contains("Firehose"), "{}", r.detail);
        let r = parse_line(&e.as_bytes()[..40], &opts()).unwrap_err();
        assert!(!r.whole, "{}", r.detail);
    }

    /// A line that begins with NUL bytes says so, and what leaves them.
    #[test]
    fn a_line_of_zeros_says_where_they_come_from() {
        let e = r#"{"event_id":"a","event_type":"t","event_timestamp":"2024-03-15T14:30:00Z","user_id":"u"}"#;
        let line = [&[0u8; 300][..], e.as_bytes()].concat();
        let r = parse_line(&line, &opts()).unwrap_err();
        assert_eq!(r.reason, Reason::InvalidJson);
        assert!(
            r.detail.starts_with(
                "invalid JSON: the line begins with 300 NUL bytes, then text at offset 300: \
                 zeros where the file had no text"
            ) && r.detail.contains("`copytruncate`"),
            "{}",
            r.detail
        );
        let r = parse_line(&[0u8; 40], &opts()).unwrap_err();
        assert!(
            r.detail
                .starts_with("invalid JSON: the line is 40 NUL bytes: "),
            "{}",
            r.detail
        );
    }

    /// Types a typed table would read but for case or separators are found;
    /// the types themselves, and others, are not.
    #[test]
    fn near_known_types_are_found() {
        for (t, known) in [
            ("Purchase", "purchase"),
            ("PURCHASE", "purchase"),
            ("purchase ", "purchase"),
            ("addToCart", "add_to_cart"),
            ("add-to-cart", "add_to_cart"),
            ("signUp", "signup"),
            ("sign_up", "signup"),
            ("Profile Updated", "profile_updated"),
        ] {
            assert_eq!(near_known_type(t), Some(known), "{t}");
        }
        for (t, letters) in KNOWN_TYPES {
            assert_eq!(letters, t.replace('_', ""));
        }
        for t in KNOWN_TYPES.map(|(t, _)| t).into_iter().chain([
            "page_view",
            "purchases",
            "purchase_refund",
            "",
            "__",
            "a_very_long_event_type_name_over_32_bytes",
        ]) {
            assert_eq!(near_known_type(t), None, "{t}");
        }
    }

    /// KNOWN_TYPES are the types the built-in SQL compares `event_type`
    /// with, no more, no fewer.
    #[test]
    fn known_types_are_those_the_sql_reads() {
        fn files(dir: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    files(&p, out);
                } else if p.extension().is_some_and(|x| x == "sql") {
                    out.push(std::fs::read_to_string(p).unwrap());
                }
            }
        }
        let mut sql = Vec::new();
        files(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("sql"),
            &mut sql,
        );
        let mut read = std::collections::BTreeSet::new();
        for text in &sql {
            for (_, rest) in text
                .match_indices("event_type")
                .map(|(i, _)| text.split_at(i))
            {
                // `event_type = 'x'`, `<> 'x'` or `IN ('x', 'y')`: the
                // literals up to the end of the comparison.
                let cmp = &rest["event_type".len()..];
                let cmp = cmp.trim_start();
                let list = if let Some(r) = cmp.strip_prefix("IN (") {
                    &r[..r.find(')').unwrap()]
                } else if let Some(r) = cmp.strip_prefix('=').or(cmp.strip_prefix("<>")) {
                    r.trim_start().split([' ', '\n', ')']).next().unwrap()
                } else {
                    continue;
                };
                for lit in list.split(',').map(str::trim) {
                    if let Some(t) = lit.strip_prefix('\'').and_then(|l| l.strip_suffix('\'')) {
                        read.insert(t.to_string());
                    }
                }
            }
        }
        let known: std::collections::BTreeSet<String> =
            KNOWN_TYPES.iter().map(|(t, _)| t.to_string()).collect();
        assert_eq!(read, known);
    }

    /// An event wrapped in another object (Docker's json-file log line, an
    /// envelope) is rejected as missing `event_id`, with how to unwrap it.
    #[test]
    fn a_wrapped_event_says_how_to_unwrap_it() {
        let e = r#"{"event_id":"a","event_type":"t","event_timestamp":"2024-03-15T14:30:00Z","user_id":"u"}"#;
        let detail = |line: String| {
            let r = parse_line(line.as_bytes(), &opts()).unwrap_err();
            assert_eq!(r.reason, Reason::MissingField, "{}", r.detail);
            r.detail
        };
        let as_string = serde_json::to_string(&format!("{e}\n")).unwrap();
        let docker =
            format!(r#"{{"log":{as_string},"stream":"stdout","time":"2024-03-15T12:00:00Z"}}"#);
        assert_eq!(
            detail(docker),
            "required field `event_id` is missing or null; the event is in `log` as a JSON \
             string (as Docker's json-file log driver writes a container's output): \
             `jq -c '.log | fromjson' FILE` unwraps it"
        );
        assert!(
            detail(format!(r#"{{"source":"s","detail":{e}}}"#)).ends_with(
                "the event is nested in `detail`, an envelope: `jq -c '.detail' FILE` unwraps it"
            )
        );
        // `payload` is also `properties`' other name; keys jq can't take bare.
        assert!(detail(format!(r#"{{"payload":{e}}}"#)).contains("`jq -c '.payload' FILE`"));
        assert!(
            detail(format!(r#"{{"the event":{e}}}"#)).contains(r#"`jq -c '.["the event"]' FILE`"#)
        );
        assert!(detail(format!(r#"{{"it's":{e}}}"#)).ends_with("nested in `it's`, an envelope"));
        // A batch of events in an array member.
        assert_eq!(
            detail(format!(r#"{{"api_key":"k","batch":[{e},{e}]}}"#)),
            "required field `event_id` is missing or null; the events are in `batch`, an array \
             (a batch API's payload): `jq -c '.batch[]' FILE` writes one per line"
        );
        assert_eq!(
            detail(r#"{"batch":[1,{"event_id":"a"}],"ids":[]}"#.to_string()),
            "required field `event_id` is missing or null"
        );
        // No hint without a wrapped `event_id`.
        for line in [
            r#"{"log":"{\"event_type\":\"t\"}","x":{"event_id":null}}"#,
            r#"{"log":"not json {","n":1}"#,
        ] {
            assert_eq!(
                detail(line.to_string()),
                "required field `event_id` is missing or null"
            );
        }
    }

    /// `properties` sent as a string holding an object says how to parse
    /// it; another string does not.
    #[test]
    fn stringified_properties_say_how_to_parse_them() {
        let line = |key: &str, value: &str| {
            format!(
                r#"{{"event_id":"a","event_type":"t","event_timestamp":"2024-03-15T14:30:00Z","user_id":"u","{key}":{value}}}"#
            )
        };
        let detail = |line: String| {
            let r = parse_line(line.as_bytes(), &opts()).unwrap_err();
            assert_eq!(r.reason, Reason::InvalidType, "{}", r.detail);
            r.detail
        };
        assert_eq!(
            detail(line("properties", r#""{\"amount\":\"19.99\"}""#)),
            r#"`properties` must be an object or null, got string "{\"amount\":\"19.99\"}"; it is a JSON object written as a string: `jq -c '.properties |= fromjson' FILE | evlake ingest -` parses it"#
        );
        assert!(
            detail(line("payload", r#"" {}""#))
                .ends_with("`jq -c '.payload |= fromjson' FILE | evlake ingest -` parses it")
        );
        for value in [r#""[1]""#, r#""{not json""#, r#""text""#, "[]", "3"] {
            assert!(!detail(line("properties", value)).contains("jq"), "{value}");
        }
    }

    /// The header line of a CSV or TSV file of events says what it is.
    #[test]
    fn a_csv_header_says_what_it_is() {
        let r = parse_line(b"event_id,event_type,event_timestamp,user_id\r", &opts()).unwrap_err();
        assert_eq!(r.reason, Reason::InvalidJson);
        assert_eq!(
            r.detail,
            format!(
                "invalid JSON: the header line of a CSV file, which evlake does not read (it \
                 reads NDJSON, one JSON event object per line): {CSV_TOOL}"
            )
        );
        for (line, format) in [
            ("\"event_id\",\"user_id\"", Some("CSV")),
            ("user_id\tEVENT_ID", Some("TSV")),
            ("ts;event_id;x", Some("CSV")),
            ("event_id", None),
            ("event_ids,user", None),
            ("{\"event_id\",\"x\"}", None),
            ("a,page_view,2024-03-15T14:30:00Z,u1", None),
        ] {
            assert_eq!(csv_header(line), format, "{line}");
        }
    }

    /// Lines another language wrote, JSON but for a few tokens, say what
    /// the tokens are; a comma after the object, as lines cut from an
    /// array have, says how to drop it.
    #[test]
    fn python_and_javascript_tokens_say_what_they_are() {
        let detail = |line: &str| {
            let r = parse_line(line.as_bytes(), &opts()).unwrap_err();
            assert_eq!(r.reason, Reason::InvalidJson, "{}", r.detail);
            r.detail
        };
        assert_eq!(
            detail("{'event_id': 'a'}"),
            "invalid JSON: key must be a string at line 1 column 2: a string in single quotes, \
             as Python's `str()` or `print()` of a dict writes it; JSON's strings take double \
             quotes (`json.dumps` writes JSON)"
        );
        assert!(detail(r#"{"event_id": 'a'}"#).contains("a string in single quotes"));
        assert_eq!(
            detail(r#"{"é":1,"p":{"x":[1,NaN]}}"#),
            "invalid JSON: expected value at line 1 column 21: `NaN`, which is not JSON \
             (Python's `json.dumps` writes it for a float NaN unless `allow_nan=False`): send \
             null, or the number as a string"
        );
        assert!(detail(r#"{"x":-Infinity}"#).contains(": `Infinity`, which is not JSON"));
        assert!(detail(r#"{"x":Infinity,"y":1}"#).contains(": `Infinity`, which is not JSON"));
        assert!(detail(r#"{"x":True}"#).ends_with(
            ": `True`, Python's, for JSON's `true` (a dict written with `str()` or `print()`?); \
             `json.dumps` writes JSON"
        ));
        assert!(detail(r#"{"x":None}"#).contains("`None`, Python's, for JSON's `null`"));
        for line in [
            r#"{"x":Nancy}"#,
            r#"{"x":Nones}"#,
            r#"{"x":nan}"#,
            "not json",
        ] {
            assert!(!detail(line).contains("Python"), "{line}");
        }
        let e = r#"{"event_id":"a","event_type":"t","event_timestamp":"2024-03-15T14:30:00Z","user_id":"u"}"#;
        assert!(detail(&format!("{e}, ")).ends_with(
            ": a comma after the object, as between a JSON array's elements; NDJSON has none: \
             `sed 's/,[[:space:]]*$//' FILE | evlake ingest -` drops it"
        ));
        assert!(!detail(&format!("{e},1")).contains("comma"));
    }

    /// A required field missing under its name but there in another
    /// spelling says what to rename (all such fields, with the jq that
    /// does); a line whose other fields alone are misspelled does not.
    #[test]
    fn misspelled_field_names_say_what_to_rename() {
        let detail = |line: &str| {
            let r = parse_line(line.as_bytes(), &opts()).unwrap_err();
            assert_eq!(r.reason, Reason::MissingField, "{}", r.detail);
            r.detail
        };
        assert_eq!(
            detail(
                r#"{"eventId":"a","event_type":"t","timestamp":"2024-03-15T14:30:00Z","user-id":"u"}"#
            ),
            r#"required field `event_id` is missing or null; field names are exact: rename `eventId` to `event_id`, `user-id` to `user_id`: `jq -c 'with_entries(.key |= ({"eventId":"event_id","user-id":"user_id"}[.] // .))' FILE | evlake ingest -` does"#
        );
        assert!(
            detail(r#"{"event_id":"a","EVENT_TYPE":"t","timestamp":"2024-03-15T14:30:00Z","user_id":"u"}"#)
                .starts_with("required field `event_type` is missing or null; field names are exact: rename `EVENT_TYPE` to `event_type`: `jq")
        );
        assert!(
            detail(r#"{"event_id":"a","event_type":"t","eventTimestamp":"2024-03-15T14:30:00Z","user_id":"u"}"#)
                .contains("rename `eventTimestamp` to `event_timestamp`")
        );
        // An alias's spelling counts for its field; no jq for a key with a quote.
        assert!(
            detail(r#"{"event_id":"a","event_type":"t","timestamp":"2024-03-15T14:30:00Z","Actor'Id":"u"}"#)
                .ends_with("rename `Actor'Id` to `actor_id`")
        );
        // `userId` is `user_id`, but nothing is `event_id`.
        assert_eq!(
            detail(
                r#"{"message_id":"a","event_type":"t","timestamp":"2024-03-15T14:30:00Z","userId":"u"}"#
            ),
            "required field `event_id` is missing or null"
        );
    }

    /// A line of a known producer's export (Segment, Amplitude, Mixpanel,
    /// GA4, Snowplow) says whose it is and gives the jq that maps its fields
    /// (each checked by hand with jq 1.6: its output is ingested whole);
    /// a line with only some of those members gets no such hint.
    #[test]
    fn producers_exports_say_how_to_map_their_fields() {
        let detail = |line: &str| parse_line(line.as_bytes(), &opts()).unwrap_err().detail;
        let segment = detail(
            r#"{"anonymousId":"a1","event":"Order Completed","messageId":"ajs-1","properties":{"revenue":19.99},"timestamp":"2024-03-15T14:30:00.000Z","type":"track","userId":"u1"}"#,
        );
        assert_eq!(
            segment,
            "required field `event_id` is missing or null; these are the fields of a Segment \
             (or RudderStack) event: `jq -c '. + {event_id: .messageId, event_type: (.event // \
             .type), user_id: (.userId // .anonymousId)}' FILE | evlake ingest -` maps them onto \
             evlake's"
        );
        // An identify call: no `event`, and `userId` null.
        assert!(
            detail(r#"{"anonymousId":"a2","messageId":"ajs-2","type":"identify","userId":null}"#)
                .contains("of a Segment (or RudderStack) event")
        );
        // Amplitude's own `event_id` is a number: a type error, same hint.
        let amplitude = parse_line(
            br#"{"$insert_id":"5f0a","device_id":"d1","event_id":776,"event_properties":{},"event_time":"2024-03-15 14:30:00.123000","event_type":"purchase","session_id":1710513000000,"user_id":"u2","uuid":"8a6e"}"#,
            &opts(),
        )
        .unwrap_err();
        assert_eq!(amplitude.reason, Reason::InvalidType);
        assert!(amplitude.detail.starts_with(
            "`event_id` must be a string, got number 776; these are the fields of an Amplitude \
             export's event: `jq -c '. + {event_id: (.uuid // .[\"$insert_id\"]), event_timestamp: \
             (.event_time + \"Z\"), user_id: (.user_id // .device_id), session_id: (.session_id | \
             if type == \"number\" and . != -1 then tostring else null end), properties: \
             .event_properties} | del(.event_properties)' FILE"
        ));
        let mixpanel = detail(
            r#"{"event":"Signed Up","properties":{"time":1602611311,"$insert_id":"hpuD","distinct_id":"user123"}}"#,
        );
        assert!(mixpanel.contains(
            "of a Mixpanel export's event: `jq -c '{event_id: .properties[\"$insert_id\"], \
             event_type: .event, event_timestamp: (.properties.time | if . < 100000000000 then \
             . * 1000 else . end | floor), user_id: .properties.distinct_id, properties}' FILE"
        ));
        assert!(mixpanel.ends_with(
            "onto evlake's (a project created before 2023 has its `time` in the project's time \
             zone, not UTC: add the offset)"
        ));
        let snowplow = detail(
            r#"{"app_id":"shop","event_id":"c6ef","event":"page_view","event_name":"page_view","collector_tstamp":"2024-03-15T14:30:00.123Z","derived_tstamp":"2024-03-15T14:30:00.100Z","domain_userid":"d1","user_id":null}"#,
        );
        assert!(snowplow.starts_with(
            "required field `event_type` is missing or null; these are the fields of a Snowplow \
             enriched event: `jq -c '. + {event_type: .event_name, event_timestamp: \
             (.derived_tstamp // .collector_tstamp), user_id: (.user_id // .domain_userid)}' FILE"
        ));
        // GA4's BigQuery export has no event id: the jq makes one.
        let ga4 = detail(
            r#"{"event_date":"20240315","event_timestamp":"1710513000123456","event_name":"page_view","event_params":[{"key":"ga_session_id","value":{"int_value":"1710512345"}}],"event_bundle_sequence_id":"3","user_id":null,"user_pseudo_id":"1234567890.1710512345","batch_event_index":"0"}"#,
        );
        assert!(
            ga4.starts_with(
                "required field `event_id` is missing or null; these are the fields of a GA4 \
                 (BigQuery export) event: `jq -c '{event_id: ([.user_pseudo_id, \
                 .event_timestamp, .event_name, .event_bundle_sequence_id, .batch_event_index] \
                 | map(. // \"\" | tostring) | join(\"-\")), event_type: .event_name, \
                 event_timestamp: (.event_timestamp | tonumber / 1000 | floor), user_id: \
                 (.user_id // .user_pseudo_id), session_id: ([.event_params[]? | select(.key == \
                 \"ga_session_id\") | .value.int_value][0]), properties: ([.event_params[]? | \
                 {key, value: (.value | .string_value // .int_value // .double_value // \
                 .float_value)}] | from_entries)}' FILE"
            ),
            "{ga4}"
        );
        assert!(
            ga4.ends_with("the time is kept to the millisecond)"),
            "{ga4}"
        );
        // Only some of a producer's members, or null ones: no hint.
        for line in [
            r#"{"messageId":"a","timestamp":"2024-03-15T14:30:00Z","userId":"u"}"#,
            r#"{"messageId":"a","event":"e","timestamp":"2024-03-15T14:30:00Z","userId":null}"#,
            r#"{"event_type":"t","event_time":"2024-03-15 14:30:00","user_id":"u","insert_id":"x"}"#,
            r#"{"event":"e","properties":{"time":1602611311,"distinct_id":"u"}}"#,
            r#"{"event":"e","properties":{"time":1602611311,"distinct_id":"u","$insert_id":null}}"#,
            r#"{"event_id":"a","event_name":"e","user_id":"u"}"#,
            r#"{"event_name":"e","event_timestamp":"1710513000123456","user_pseudo_id":null}"#,
        ] {
            assert!(!detail(line).contains("these are the fields"), "{line}");
        }
    }

    #[test]
    fn field_names_are_the_names_slots_read() {
        for name in FIELD_NAMES {
            assert!(Slot::of_key(name).is_some(), "{name}");
        }
        for slot in [
            Slot::EventId,
            Slot::EventType,
            Slot::EventTimestamp,
            Slot::UserId,
            Slot::ClientSessionId,
            Slot::PageUrl,
            Slot::SourceSystem,
            Slot::Properties,
        ] {
            assert!(FIELD_NAMES.contains(&slot.name()), "{slot:?}");
        }
        assert_eq!(SLOTS, 8);
    }

    /// Epoch seconds with a fraction get their instant and milliseconds.
    #[test]
    fn epoch_digits_in_a_string_say_their_unit_and_instant() {
        let detail = |ts: &str| {
            let line = format!(
                r#"{{"event_id":"a","event_type":"t","event_timestamp":"{ts}","user_id":"u"}}"#
            );
            let r = parse_line(line.as_bytes(), &opts()).unwrap_err();
            assert_eq!(r.reason, Reason::InvalidTimestamp);
            r.detail
        };
        // GA4's BigQuery export: microseconds, as a string.
        assert_eq!(
            detail("1710513000123456"),
            "`event_timestamp` \"1710513000123456\" is not an RFC 3339 timestamp: digits in a \
             string, which as epoch microseconds is 2024-03-15T14:30:00.123456Z (send that, or \
             1710513000123 as a JSON integer, unquoted, which evlake reads as epoch \
             milliseconds)"
        );
        assert!(
            detail("1710513000123").contains("as epoch milliseconds is 2024-03-15T14:30:00.123Z")
        );
        assert!(detail("1710513000").contains("as epoch seconds is 2024-03-15T14:30:00Z (send"));
        assert!(
            detail("1710513000123456789")
                .contains("as epoch nanoseconds is 2024-03-15T14:30:00.123456Z")
        );
        // Epoch seconds with a fraction, as a string (Python's
        // `str(time.time())`).
        assert_eq!(
            detail("1710513000.5"),
            "`event_timestamp` \"1710513000.5\" is not an RFC 3339 timestamp: epoch seconds \
             with a fraction in a string, which is 2024-03-15T14:30:00.500Z (send that, or \
             1710513000500 as a JSON integer, unquoted, which evlake reads as epoch \
             milliseconds)"
        );
        assert!(
            detail("12.5").ends_with("is not an RFC 3339 timestamp: too short for a date-time")
        );
        // No unit of this era: the plain message.
        for ts in ["20240315", "99999999999999999999", "12"] {
            assert!(
                detail(ts).ends_with(
                    "digits in a string (epoch milliseconds are accepted as a \
                                      JSON integer, unquoted)"
                ),
                "{ts}: {}",
                detail(ts)
            );
        }
    }

    #[test]
    fn fractional_epoch_seconds_say_what_they_would_be() {
        let r = parse_line(
            br#"{"event_id":"a","event_type":"t","event_timestamp":1710513000.1234567,"user_id":"u"}"#,
            &opts(),
        )
        .unwrap_err();
        assert_eq!(r.reason, Reason::InvalidType);
        assert_eq!(
            r.detail,
            "`event_timestamp` must be an RFC 3339 string or integer epoch milliseconds, got \
             number 1710513000.1234567 (epoch seconds with a fraction, as Python's \
             `time.time()` gives? That is `2024-03-15T14:30:00.123456Z`: send it so, or as \
             integer milliseconds, 1710513000123)"
        );
        assert_eq!(
            fractional_epoch_seconds("1710513000.5"),
            Some(1_710_513_000_500_000)
        );
        for no in [
            "1.5",
            "1710513000",
            "1710513000.",
            "1.7105130001e9",
            "-1710513000.5",
            "99999999999.5",
        ] {
            assert_eq!(fractional_epoch_seconds(no), None, "{no}");
        }
    }

    /// A line in a single-byte encoding says which character its first
    /// bad byte is there, and how to convert the file; a UTF-8 character
    /// cut short, or a bad byte after UTF-8 text, does not.
    #[test]
    fn latin_1_text_says_what_it_is() {
        let detail = |line: &[u8]| {
            let r = parse_line(line, &opts()).unwrap_err();
            assert_eq!(r.reason, Reason::InvalidUtf8);
            r.detail
        };
        assert_eq!(
            detail(b"{\"user_id\":\"Jos\xe9\"}"),
            "line is not valid UTF-8 (bad byte at offset 15): byte 0xE9 is `\u{e9}` in Latin-1 \
             and Windows-1252, not UTF-8: `iconv -f WINDOWS-1252 -t UTF-8 FILE | evlake ingest -` \
             converts the file"
        );
        assert!(
            detail(b"{\"q\":\"\x93x\x94\"}")
                .contains("byte 0x93 is `\u{201c}` in Windows-1252, not")
        );
        for line in [
            &b"{\"q\":\"\x81\"}"[..],
            b"{\"q\":\"\xff\"}",
            b"{\"q\":\"\xc3\xa9\xe9\"}",
            b"{\"q\":\"\xf0\x9f\x98\"}",
        ] {
            assert!(!detail(line).contains("iconv"), "{line:?}");
        }
    }

    /// A date in MongoDB Extended JSON says how to take it out.
    #[test]
    fn a_mongodb_date_says_how_to_take_it_out() {
        let detail = |ts: &str| {
            let line =
                format!(r#"{{"event_id":"a","event_type":"t","timestamp":{ts},"user_id":"u"}}"#);
            let r = parse_line(line.as_bytes(), &opts()).unwrap_err();
            assert_eq!(r.reason, Reason::InvalidType, "{}", r.detail);
            r.detail
        };
        assert_eq!(
            detail(r#"{"$date":"2024-03-15T14:30:00Z"}"#),
            r#"`event_timestamp` must be an RFC 3339 string or integer epoch milliseconds, got object {"$date":"2024-03-15T14:30:00Z"}; a date as MongoDB Extended JSON writes it (`mongoexport`): `jq -c '.timestamp |= .["$date"]' FILE | evlake ingest -` takes the date out"#
        );
        assert!(detail(r#"{"$date":{"$numberLong":"1710513000000"}}"#).ends_with(
            r#"`jq -c '.timestamp |= (.["$date"]["$numberLong"] | tonumber)' FILE | evlake ingest -` takes the date out"#
        ));
        assert!(detail(r#"{"$date":1710513000000}"#).contains("MongoDB"));
        for ts in [
            r#"{"$date":"x","y":1}"#,
            r#"{"date":"2024-03-15T14:30:00Z"}"#,
            r#"{"$date":[1]}"#,
        ] {
            assert!(!detail(ts).contains("MongoDB"), "{ts}");
        }
    }
}
