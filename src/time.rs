//! Time values: event timestamps (RFC 3339 or epoch milliseconds), the run's
//! processing time, and durations such as `30m` or `1d`.
//!
//! All instants are microseconds since the Unix epoch, UTC, as stored in
//! Parquet (`Timestamp(Microsecond, "UTC")`).

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};

pub const MICROS_PER_SECOND: i64 = 1_000_000;
pub const MICROS_PER_DAY: i64 = 86_400 * MICROS_PER_SECOND;

/// Why a timestamp string could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimestampError {
    /// Looks like a date-time but carries no UTC offset.
    WithoutOffset,
    /// Not a valid RFC 3339 timestamp (bad syntax or out-of-range field).
    Invalid(String),
    /// A leap second (`23:59:60`): valid RFC 3339, but a UTC timestamp
    /// (and bronze's readers: DuckDB, Spark) cannot hold it.
    LeapSecond,
}

/// What to do with timestamps that carry no offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NaiveTimestamps {
    /// Quarantine them (`timestamp_without_offset`).
    #[default]
    Reject,
    /// Read them as UTC.
    Utc,
}

/// Parse an RFC 3339 timestamp (`2024-03-15T14:30:00.123+02:00`, `...Z`)
/// into UTC microseconds. Digits past the microsecond are truncated. The
/// separator may be `T`, `t` or a space; the offset may be `Z`, `+HH:MM`,
/// `+HHMM`, `+HH`, or `UTC` (or `GMT`) after a space, as BigQuery writes
/// its timestamps (`2024-03-15 14:30:00 UTC`). A timestamp in another
/// form that is common (an RFC 2822 date, a date alone) says so.
pub fn parse_rfc3339_micros(s: &str, naive: NaiveTimestamps) -> Result<i64, TimestampError> {
    rfc3339_micros(s, naive).map_err(|e| match e {
        TimestampError::Invalid(_) if parse_date32(s).is_ok() => {
            TimestampError::Invalid("a date without a time of day".to_string())
        }
        TimestampError::Invalid(_) => match DateTime::parse_from_rfc2822(s) {
            Ok(t) => TimestampError::Invalid(format!(
                "an RFC 2822 date (as email and HTTP headers write them): write it `{}`",
                t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            )),
            Err(_) => match extended_of_basic(s) {
                Some(x) if rfc3339_micros(&x, NaiveTimestamps::Utc).is_ok() => {
                    TimestampError::Invalid(format!(
                        "ISO 8601 basic format (no `-` or `:`): write it `{x}`"
                    ))
                }
                _ => match go_string_form(s) {
                    Some((us, true)) => TimestampError::Invalid(format!(
                        "Go's `time.Time.String()` form: write it `{}` (Go: \
                         `t.UTC().Format(time.RFC3339Nano)`)",
                        format_micros(us)
                    )),
                    Some((us, false)) => TimestampError::Invalid(format!(
                        "a space before the UTC offset: write it `{}`",
                        format_micros(us)
                    )),
                    None => e,
                },
            },
        },
        e => e,
    })
}

/// The instant of Go's `time.Time.String()` form, `2024-03-15
/// 14:30:00.5 +0100 CET` (the offset decides it; the zone's abbreviation
/// and a monotonic clock reading, ` m=+0.000012`, may follow), if `s` is
/// one, and whether a zone's abbreviation followed (without one, it is
/// just a space before the offset).
fn go_string_form(s: &str) -> Option<(i64, bool)> {
    let at = s.get(19..)?.find(' ')? + 19;
    let (date_time, rest) = (&s[..at], &s[at + 1..]);
    let offset = rest.get(..5)?;
    let after = &rest[5..];
    let known = after.is_empty()
        || after.strip_prefix(' ').is_some_and(|t| {
            let mut words = t.split(' ');
            let zone = words.next().unwrap_or("");
            !zone.is_empty()
                && zone
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'-')
                && words.next().is_none_or(|m| m.starts_with("m="))
                && words.next().is_none()
        });
    if !known || !offset.starts_with(['+', '-']) {
        return None;
    }
    let us = rfc3339_micros(&format!("{date_time}{offset}"), NaiveTimestamps::Reject).ok()?;
    Some((us, !after.is_empty()))
}

/// ISO 8601's basic format (`20240315T143000Z`, `20240315T143000.5+0200`)
/// written in the extended format RFC 3339 takes (`2024-03-15T14:30:00Z`),
/// if `s` begins as one: eight digits, `T`, six digits.
fn extended_of_basic(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let ok = b.len() >= 15
        && b[..8].iter().all(u8::is_ascii_digit)
        && matches!(b[8], b'T' | b't')
        && b[9..15].iter().all(u8::is_ascii_digit);
    ok.then(|| {
        format!(
            "{}-{}-{}T{}:{}:{}{}",
            &s[..4],
            &s[4..6],
            &s[6..8],
            &s[9..11],
            &s[11..13],
            &s[13..15],
            &s[15..]
        )
    })
}

fn rfc3339_micros(s: &str, naive: NaiveTimestamps) -> Result<i64, TimestampError> {
    let b = s.as_bytes();
    let bad = |what: &str| TimestampError::Invalid(what.to_string());
    if b.len() < 16 {
        return Err(bad("too short for a date-time"));
    }
    let year = digits(b, 0, 4).ok_or_else(|| bad("expected YYYY-MM-DD, the year first"))? as i32;
    if b[4] != b'-' || b[7] != b'-' {
        return Err(bad("expected YYYY-MM-DD"));
    }
    let month = digits(b, 5, 2).ok_or_else(|| bad("bad month"))?;
    let day = digits(b, 8, 2).ok_or_else(|| bad("bad day"))?;
    if !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad("expected 'T' between date and time"));
    }
    let hour = digits(b, 11, 2).ok_or_else(|| bad("bad hour"))?;
    if b[13] != b':' {
        return Err(bad("expected HH:MM:SS"));
    }
    let minute = digits(b, 14, 2).ok_or_else(|| bad("bad minute"))?;
    // Seconds may be left out when they are zero (`14:30Z`), as ISO 8601
    // allows and Java's `OffsetDateTime` and `ZonedDateTime` write them:
    // else a producer's every event on a whole minute is bad.
    let (second, mut i) = match b.get(16) {
        Some(b':') => (digits(b, 17, 2).ok_or_else(|| bad("bad second"))?, 19),
        None | Some(b'Z' | b'z' | b'+' | b'-' | b' ') => (0, 16),
        Some(_) => return Err(bad("expected seconds (HH:MM:SS)")),
    };
    let mut micros_frac: i64 = 0;
    if i == 19 && (b.get(i) == Some(&b'.') || b.get(i) == Some(&b',')) {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 6 {
                micros_frac = micros_frac * 10 + (b[i] - b'0') as i64;
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return Err(bad("empty fractional seconds"));
        }
        for _ in n..6 {
            micros_frac *= 10;
        }
    }
    if !(1..=12).contains(&month) {
        return Err(bad("month out of range"));
    }
    if day == 0 || day > days_in_month(year, month) {
        return Err(bad("day out of range"));
    }
    if hour > 23 {
        return Err(bad("hour out of range"));
    }
    if minute > 59 {
        return Err(bad("minute out of range"));
    }
    if second == 60 {
        return Err(TimestampError::LeapSecond);
    }
    if second > 59 {
        return Err(bad("second out of range"));
    }
    // RFC 9557's suffixes after the offset (`+01:00[Europe/Paris]`, as
    // Java's `ZonedDateTime` writes): the offset stands for the instant,
    // so they change nothing. Without an offset, the zone name is one.
    let (s, b) = match s[i..].find('[') {
        Some(at) if is_suffixes(&s[i + at..]) && at > 0 => (&s[..i + at], &b[..i + at]),
        Some(0) if is_suffixes(&s[i..]) => {
            return Err(TimestampError::Invalid(format!(
                "a time zone name (`{}`) after the time, whose offset evlake does not look up: \
                 write the offset (`Z`, `+HH:MM`) before it",
                &s[i..]
            )));
        }
        _ => (s, b),
    };
    let offset_secs: i64 = match b.get(i) {
        None => match naive {
            NaiveTimestamps::Reject => return Err(TimestampError::WithoutOffset),
            NaiveTimestamps::Utc => 0,
        },
        Some(b'Z' | b'z') if i + 1 == b.len() => 0,
        Some(&sign @ (b'+' | b'-')) => {
            let rest = &b[i + 1..];
            let (oh, om) = match rest.len() {
                2 => (digits(rest, 0, 2), Some(0)),
                4 => (digits(rest, 0, 2), digits(rest, 2, 2)),
                5 if rest[2] == b':' => (digits(rest, 0, 2), digits(rest, 3, 2)),
                _ => (None, None),
            };
            let (oh, om) = oh.zip(om).ok_or_else(|| bad("bad UTC offset"))?;
            if oh > 23 || om > 59 {
                return Err(bad("UTC offset out of range"));
            }
            let secs = (oh as i64) * 3600 + (om as i64) * 60;
            if sign == b'+' { secs } else { -secs }
        }
        Some(_) => match s[i..].strip_prefix(' ').unwrap_or(&s[i..]) {
            zone if zone.eq_ignore_ascii_case("UTC") || zone.eq_ignore_ascii_case("GMT") => 0,
            zone if zone.len() > 1
                && zone.starts_with(|c: char| c.is_ascii_alphabetic())
                && zone.bytes().all(|c| {
                    c.is_ascii_alphanumeric() || matches!(c, b'/' | b'_' | b'-' | b'+')
                }) =>
            {
                return Err(TimestampError::Invalid(format!(
                    "a time zone name (`{zone}`) after the time, whose offset evlake does not \
                     look up: write the offset (`Z`, `+HH:MM`) instead"
                )));
            }
            _ => return Err(bad("unexpected text after the time")),
        },
    };
    let days = days_from_civil(year, month, day);
    let local_secs = days * 86_400 + (hour as i64) * 3600 + (minute as i64) * 60 + second as i64;
    Ok((local_secs - offset_secs) * MICROS_PER_SECOND + micros_frac)
}

/// Whether `t` is one or more of RFC 9557's suffixes: `[...]` each, of
/// the characters a time zone name or a `key=value` tag takes.
fn is_suffixes(t: &str) -> bool {
    !t.is_empty()
        && t.split_inclusive(']').all(|part| {
            part.strip_prefix('[')
                .and_then(|p| p.strip_suffix(']'))
                .map(|p| p.strip_prefix('!').unwrap_or(p))
                .is_some_and(|p| {
                    !p.is_empty()
                        && p.bytes().all(|c| {
                            c.is_ascii_alphanumeric()
                                || matches!(c, b'/' | b'_' | b'-' | b'+' | b'=')
                        })
                })
        })
}

/// Epoch milliseconds to microseconds, rejecting values outside years 0..=9999.
pub fn epoch_millis_to_micros(ms: i64) -> Option<i64> {
    const MIN_MS: i64 = -62_167_219_200_000; // 0000-01-01
    const MAX_MS: i64 = 253_402_300_799_999; // 9999-12-31T23:59:59.999
    (MIN_MS..=MAX_MS).contains(&ms).then(|| ms * 1000)
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + (c - b'0') as u32;
    }
    Some(v)
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 for a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y } as i64;
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The UTC date (days since epoch, Arrow `Date32`) of an instant.
pub fn date32_of_micros(us: i64) -> i32 {
    us.div_euclid(MICROS_PER_DAY) as i32
}

/// `YYYY-MM-DD` for an Arrow `Date32` value.
pub fn format_date32(days: i32) -> String {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid epoch");
    (epoch + chrono::Duration::days(days as i64))
        .format("%Y-%m-%d")
        .to_string()
}

/// Days since 1970-01-01 for a `YYYY-MM-DD` date (a partition value).
pub fn parse_date32(s: &str) -> Result<i32, String> {
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| format!("`{s}` is not a date (YYYY-MM-DD)"))?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid epoch");
    Ok((d - epoch).num_days() as i32)
}

/// RFC 3339 text (UTC, `Z`, microseconds only when needed) for an instant.
pub fn format_micros(us: i64) -> String {
    match DateTime::<Utc>::from_timestamp_micros(us) {
        Some(t) => t.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        None => format!("{us}us"),
    }
}

/// RFC 3339 with an offset, or a date (`YYYY-MM-DD`) standing for the
/// first microsecond of its UTC day, or with `end_of_day` its last.
pub fn parse_instant_or_date(s: &str, end_of_day: bool) -> Result<i64, String> {
    let t = s.trim();
    // Epoch seconds or milliseconds, as `date +%s` prints them: the
    // instant they stand for, written as it is to be.
    if (9..=13).contains(&t.len())
        && t.bytes().all(|b| b.is_ascii_digit())
        && let Ok(n) = t.parse::<i64>()
    {
        let (us, unit, date) = if t.len() <= 11 {
            (n * 1_000_000, "seconds", format!("date -u -d @{n} +%FT%TZ"))
        } else {
            (
                n * 1_000,
                "milliseconds",
                format!("date -u -d @{}.{:03} +%FT%T.%3NZ", n / 1000, n % 1000),
            )
        };
        return Err(format!(
            "`{s}` reads as epoch {unit}, which this flag does not take: write `{}` (`{date}` \
             prints it so)",
            format_micros(us)
        ));
    }
    if t.len() == 10 {
        let day = i64::from(parse_date32(t)?);
        return Ok(if end_of_day {
            (day + 1) * MICROS_PER_DAY - 1
        } else {
            day * MICROS_PER_DAY
        });
    }
    // A date in ISO 8601's basic form, as `date +%Y%m%d` prints it in a
    // cron line: the form to write instead.
    if t.len() == 8 && t.bytes().all(|b| b.is_ascii_digit()) {
        let extended = format!("{}-{}-{}", &t[..4], &t[4..6], &t[6..]);
        if parse_date32(&extended).is_ok() {
            return Err(format!(
                "`{s}` is a date without its `-`: write `{extended}` (`date -u +%F` prints a \
                 date so)"
            ));
        }
    }
    parse_instant(t).map_err(|e| format!("{e} (use RFC 3339 or a date, e.g. 2024-03-15)"))
}

/// Parse a `--processing-time` value: RFC 3339 with an offset.
pub fn parse_instant(s: &str) -> Result<i64, String> {
    parse_rfc3339_micros(s.trim(), NaiveTimestamps::Reject).map_err(|e| match e {
        TimestampError::WithoutOffset => {
            format!("`{s}` has no UTC offset; add `Z` or e.g. `+02:00`")
        }
        TimestampError::Invalid(why) => {
            format!("`{s}` is not an RFC 3339 timestamp ({why}); example: 2024-03-16T02:00:00Z")
        }
        TimestampError::LeapSecond => {
            format!("`{s}` is a leap second, which a UTC timestamp cannot hold")
        }
    })
}

/// A duration as microseconds, parsed from `90s`, `30m`, `1h`, `1d`,
/// `1h30m` or `0`.
pub fn parse_duration_micros(s: &str) -> Result<i64, String> {
    let t = s.trim();
    if t == "0" {
        return Ok(0);
    }
    let err = || {
        format!("`{s}` is not a duration; use a number with a unit: 500ms, 90s, 30m, 1h, 1d, 1h30m")
    };
    if t.is_empty() {
        return Err(err());
    }
    let mut total: i64 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        let n_end = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(err)?;
        if n_end == 0 {
            return Err(err());
        }
        let n: i64 = rest[..n_end].parse().map_err(|_| err())?;
        rest = &rest[n_end..];
        let u_end = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..u_end] {
            "us" | "µs" => 1,
            "ms" => 1_000,
            "s" => MICROS_PER_SECOND,
            "m" | "min" => 60 * MICROS_PER_SECOND,
            "h" => 3600 * MICROS_PER_SECOND,
            "d" => MICROS_PER_DAY,
            "w" => 7 * MICROS_PER_DAY,
            _ => return Err(err()),
        };
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(err)?;
        rest = &rest[u_end..];
    }
    Ok(total)
}

/// Human text for a duration in microseconds: `0s`, `850ms`, `42s`, `3m20s`,
/// `5h2m`, `3d4h`.
pub fn format_duration_micros(us: i64) -> String {
    let neg = us < 0;
    let us = us.unsigned_abs();
    let s = us / 1_000_000;
    let text = if us < 1_000_000 {
        if us == 0 {
            "0s".into()
        } else {
            format!("{}ms", us / 1000)
        }
    } else if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{}s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{}h{}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}d{}h", s / 86_400, (s % 86_400) / 3600)
    };
    if neg { format!("-{text}") } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<i64, TimestampError> {
        parse_rfc3339_micros(s, NaiveTimestamps::Reject)
    }

    fn chrono_us(s: &str) -> i64 {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_micros()
    }

    #[test]
    fn parses_zulu_and_offsets_to_utc() {
        assert_eq!(
            p("2024-03-15T14:30:00Z").unwrap(),
            chrono_us("2024-03-15T14:30:00Z")
        );
        assert_eq!(
            p("2024-03-15T14:30:00.123+02:00").unwrap(),
            chrono_us("2024-03-15T12:30:00.123Z")
        );
        assert_eq!(
            p("2024-03-15T14:30:00-0530").unwrap(),
            chrono_us("2024-03-15T20:00:00Z")
        );
        assert_eq!(
            p("2024-03-15 14:30:00+01").unwrap(),
            chrono_us("2024-03-15T13:30:00Z")
        );
        assert_eq!(
            p("2024-02-29t00:00:00z").unwrap(),
            chrono_us("2024-02-29T00:00:00Z")
        );
    }

    /// `UTC` after the time is UTC (BigQuery's form); another zone name,
    /// an RFC 2822 date and a date alone each say what they are.
    #[test]
    fn zone_names_rfc_2822_dates_and_dates_alone() {
        let utc = chrono_us("2024-03-15T14:30:00Z");
        assert_eq!(p("2024-03-15 14:30:00 UTC").unwrap(), utc);
        assert_eq!(p("2024-03-15T14:30:00UTC").unwrap(), utc);
        assert_eq!(p("2024-03-15 14:30:00.25 GMT").unwrap(), utc + 250_000);
        assert_eq!(p("2024-03-15 14:30:00 utc").unwrap(), utc);
        let why = |s: &str| match p(s) {
            Err(TimestampError::Invalid(why)) => why,
            other => panic!("{s}: {other:?}"),
        };
        for zone in ["EST", "America/New_York", "Etc/GMT+5", "CET"] {
            assert_eq!(
                why(&format!("2024-03-15 14:30:00 {zone}")),
                format!(
                    "a time zone name (`{zone}`) after the time, whose offset evlake does not \
                     look up: write the offset (`Z`, `+HH:MM`) instead"
                )
            );
        }
        for s in [
            "2024-03-15T14:30:00Z UTC",
            "2024-03-15T14:30:00 Z",
            "2024-03-15 14:30:00  UTC",
        ] {
            assert_eq!(why(s), "unexpected text after the time", "{s}");
        }
        assert_eq!(
            why("Fri, 15 Mar 2024 14:30:00 GMT"),
            "an RFC 2822 date (as email and HTTP headers write them): write it \
             `2024-03-15T14:30:00Z`"
        );
        assert!(why("Fri, 15 Mar 2024 16:30:00 +0200").ends_with("`2024-03-15T16:30:00+02:00`"));
        assert_eq!(why("2024-03-15"), "a date without a time of day");
        // ISO 8601's basic format gets its extended form, offset and
        // fraction kept; a day or month first is not guessed at.
        assert_eq!(
            why("20240315T143000Z"),
            "ISO 8601 basic format (no `-` or `:`): write it `2024-03-15T14:30:00Z`"
        );
        assert!(why("20240315t143000.25+0200").ends_with("`2024-03-15T14:30:00.25+0200`"));
        assert!(why("20240315T143000").ends_with("`2024-03-15T14:30:00`"));
        // Go's `time.Time.String()`, its offset deciding the instant.
        assert_eq!(
            why("2024-03-15 15:30:00.5 +0100 CET"),
            "Go's `time.Time.String()` form: write it `2024-03-15T14:30:00.500Z` (Go: \
             `t.UTC().Format(time.RFC3339Nano)`)"
        );
        assert!(
            why("2024-03-15 14:30:00 +0000 UTC m=+0.000012")
                .ends_with("`2024-03-15T14:30:00Z` (Go: `t.UTC().Format(time.RFC3339Nano)`)")
        );
        assert!(why("2024-03-15 14:30:00 +0000 +0000").contains("Go's"));
        assert_eq!(
            why("2024-03-15 15:30:00 +0100"),
            "a space before the UTC offset: write it `2024-03-15T14:30:00Z`"
        );
        for s in [
            "2024-03-15 14:30:00 +0000 UTC extra",
            "2024-03-15 14:30:00 0000 UTC",
        ] {
            assert!(!why(s).contains("Go's"), "{s}");
        }
        assert_eq!(why("20240399T143000Z"), "expected YYYY-MM-DD");
        assert_eq!(why("20240315T1430Z"), "too short for a date-time");
        assert_eq!(
            why("15/03/2024 14:30:00"),
            "expected YYYY-MM-DD, the year first"
        );
        assert_eq!(why("2024-02-30"), "too short for a date-time");
    }

    /// A flag's instant: a date is its day's first or last microsecond;
    /// a date without its `-` (`date +%Y%m%d`) says how to write it.
    #[test]
    fn instants_and_dates_of_flags() {
        let day = chrono_us("2024-03-15T00:00:00Z");
        assert_eq!(parse_instant_or_date("2024-03-15", false), Ok(day));
        assert_eq!(
            parse_instant_or_date("2024-03-15", true),
            Ok(day + MICROS_PER_DAY - 1)
        );
        assert_eq!(
            parse_instant_or_date("20240315", true),
            Err(
                "`20240315` is a date without its `-`: write `2024-03-15` (`date -u +%F` prints \
                 a date so)"
                    .to_string()
            )
        );
        assert_eq!(
            parse_instant_or_date("1710496800", true),
            Err(
                "`1710496800` reads as epoch seconds, which this flag does not take: write \
                 `2024-03-15T10:00:00Z` (`date -u -d @1710496800 +%FT%TZ` prints it so)"
                    .to_string()
            )
        );
        assert_eq!(
            parse_instant_or_date("1710496800123", false),
            Err(
                "`1710496800123` reads as epoch milliseconds, which this flag does not take: \
                 write `2024-03-15T10:00:00.123Z` (`date -u -d @1710496800.123 +%FT%T.%3NZ` \
                 prints it so)"
                    .to_string()
            )
        );
        let other = parse_instant_or_date("20241315", true).unwrap_err();
        assert!(other.contains("too short for a date-time"), "{other}");
    }

    /// What Java's date-time classes write: seconds left out when zero
    /// (`OffsetDateTime`), and the zone after the offset (RFC 9557, as
    /// `ZonedDateTime` writes it), which the offset decides.
    #[test]
    fn java_forms_without_seconds_and_with_a_zone_suffix() {
        let at = chrono_us("2024-03-15T14:30:00Z");
        for s in [
            "2024-03-15T14:30Z",
            "2024-03-15T15:30+01:00",
            "2024-03-15T15:30+01:00[Europe/Paris]",
            "2024-03-15T14:30:00Z[UTC]",
            "2024-03-15T15:30:00+01:00[Europe/Paris][u-ca=iso8601]",
            "2024-03-15T15:30:00+01:00[!Europe/Paris]",
            "2024-03-15 14:30 UTC",
        ] {
            assert_eq!(p(s), Ok(at), "{s}");
        }
        assert_eq!(p("2024-03-15T14:30:00.5+00:00[Etc/UTC]"), Ok(at + 500_000));
        assert_eq!(p("2024-03-15T14:30"), Err(TimestampError::WithoutOffset));
        match p("2024-03-15T14:30:00[Europe/Paris]") {
            Err(TimestampError::Invalid(why)) => assert!(
                why.starts_with("a time zone name (`[Europe/Paris]`) after the time"),
                "{why}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn offset_moves_event_across_midnight() {
        let us = p("2024-03-16T01:30:00+02:00").unwrap();
        assert_eq!(format_date32(date32_of_micros(us)), "2024-03-15");
    }

    #[test]
    fn truncates_below_microseconds() {
        let us = p("2024-03-15T14:30:00.123456789Z").unwrap();
        assert_eq!(us % MICROS_PER_SECOND, 123_456);
        let us = p("2024-03-15T14:30:00.5Z").unwrap();
        assert_eq!(us % MICROS_PER_SECOND, 500_000);
    }

    #[test]
    fn rejects_out_of_range_and_garbage() {
        for s in [
            "yesterday",
            "2024-13-45T25:61:00Z",
            "2024-02-30T00:00:00Z",
            "2023-02-29T00:00:00Z",
            "2024-03-15T24:00:00Z",
            "2024-03-15T23:59:61Z",
            "2024-03-15",
            "2024-03-15T14:3Z",
            "2024-03-15T14:30.5Z",
            "2024-03-15T14:30:00Z[Europe Paris]",
            "2024-03-15T14:30:00Z[]",
            "2024-03-15T14:30:00Z[UTC",
            "2024-03-15T14:30:00.Z",
            "2024-03-15T14:30:00+25:00",
            "2024-03-15T14:30:00Zjunk",
            " 2024-03-15T14:30:00Z",
        ] {
            assert!(matches!(p(s), Err(TimestampError::Invalid(_))), "{s}");
        }
        assert_eq!(p("2016-12-31T23:59:60Z"), Err(TimestampError::LeapSecond));
    }

    #[test]
    fn naive_timestamps_need_opt_in() {
        assert_eq!(p("2024-03-15T14:30:00"), Err(TimestampError::WithoutOffset));
        assert_eq!(
            parse_rfc3339_micros("2024-03-15T14:30:00", NaiveTimestamps::Utc).unwrap(),
            chrono_us("2024-03-15T14:30:00Z")
        );
    }

    #[test]
    fn epoch_millis() {
        assert_eq!(
            epoch_millis_to_micros(1_710_513_000_123),
            Some(1_710_513_000_123_000)
        );
        assert_eq!(epoch_millis_to_micros(i64::MAX), None);
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration_micros("30m").unwrap(),
            30 * 60 * MICROS_PER_SECOND
        );
        assert_eq!(
            parse_duration_micros("1h30m").unwrap(),
            90 * 60 * MICROS_PER_SECOND
        );
        assert_eq!(parse_duration_micros("1d").unwrap(), MICROS_PER_DAY);
        assert_eq!(parse_duration_micros("0").unwrap(), 0);
        for bad in ["", "30", "m", "1x", "-1h", "1.5h"] {
            assert!(parse_duration_micros(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration_micros(90 * MICROS_PER_SECOND), "1m30s");
    }

    #[test]
    fn dates_before_epoch() {
        assert_eq!(format_date32(date32_of_micros(-1)), "1969-12-31");
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(parse_date32("2000-03-01"), Ok(11_017));
        assert_eq!(parse_date32("1969-12-31"), Ok(-1));
        assert!(parse_date32("2024-02-30").is_err());
    }
}
