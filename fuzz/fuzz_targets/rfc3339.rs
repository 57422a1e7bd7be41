//! Event timestamps (`src/time.rs`, `parse_rfc3339_micros`) against
//! chrono's RFC 3339 parser. Where chrono accepts, evlake gives the same
//! instant (truncated to the microsecond), or says it is a leap second.
//! Where chrono rejects and evlake accepts, it must be one of the forms
//! evlake adds (a `,` before the fraction, a `+HHMM` or `+HH` offset),
//! which written as chrono reads them give the same instant.
#![no_main]
#![allow(dead_code)]

use chrono::{DateTime, Timelike};
use libfuzzer_sys::fuzz_target;

#[path = "../../src/time.rs"]
mod time;

/// `s` with evlake's extra forms rewritten as RFC 3339 proper.
fn as_chrono_reads(s: &str) -> String {
    let mut s = s.to_string();
    if s.len() > 19 && s.as_bytes()[19] == b',' {
        s.replace_range(19..20, ".");
    }
    let b = s.as_bytes();
    let n = b.len();
    let offset_at = |len: usize| {
        n >= 19 + len
            && matches!(b[n - len], b'+' | b'-')
            && b[n - len + 1..].iter().all(u8::is_ascii_digit)
    };
    if offset_at(5) {
        s.insert(n - 2, ':');
    } else if offset_at(3) {
        s.push_str(":00");
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let ours = time::parse_rfc3339_micros(s, time::NaiveTimestamps::Reject);
    match DateTime::parse_from_rfc3339(s) {
        Ok(t) if t.nanosecond() >= 1_000_000_000 => {
            assert_eq!(ours, Err(time::TimestampError::LeapSecond), "{s:?}")
        }
        Ok(t) => assert_eq!(ours, Ok(t.timestamp_micros()), "{s:?}"),
        Err(_) => {
            if let Ok(us) = ours {
                let proper = as_chrono_reads(s);
                let t = DateTime::parse_from_rfc3339(&proper)
                    .unwrap_or_else(|e| panic!("evlake accepted {s:?}; as {proper:?}: {e}"));
                assert_eq!(us, t.timestamp_micros(), "{s:?}");
            }
        }
    }
});
