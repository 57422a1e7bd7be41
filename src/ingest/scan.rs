//! The fast path of [`super::parse::parse_line`]: one JSON object line
//! scanned and validated in a single pass without serde, giving each
//! top-level member's key and raw value text exactly as serde_json's
//! `RawValue` gives them.
//!
//! It reads bytes, and checks UTF-8 as it goes: the grammar outside strings
//! is ASCII, and inside a string a run of non-ASCII bytes must be valid
//! UTF-8, so a line it accepts is valid UTF-8 and the line needs no
//! separate check (which had been ~2% of ingest's CPU).
//!
//! It accepts only what serde_json accepts (RFC 8259 with serde_json's
//! rules: no control characters in strings, escapes checked, one leading
//! zero, no trailing commas or trailing text). Whenever it is not sure, an
//! escaped top-level key, nesting deeper than [`MAX_DEPTH`] or any error,
//! it returns `None` and the caller asks serde_json, which then decides and
//! words the error. A differential test checks it against serde_json on
//! valid and mutated lines.

use std::borrow::Cow;

/// Deeper values go to serde_json (whose own limit is 128).
const MAX_DEPTH: usize = 64;

/// A top-level member: its key and its value.
pub type Member<'a> = (Cow<'a, str>, Raw<'a>);

/// A value's JSON text, and whether it is a string with escapes (so a
/// string without can be borrowed from between its quotes unchecked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raw<'a> {
    pub text: &'a str,
    pub escaped: bool,
}

impl<'a> Raw<'a> {
    /// A value read by serde_json: escapes looked for.
    pub fn new(text: &'a str) -> Self {
        Raw {
            text,
            escaped: text.starts_with('"') && memchr::memchr(b'\\', text.as_bytes()).is_some(),
        }
    }
}

impl std::ops::Deref for Raw<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        self.text
    }
}

/// The members of `text` (one JSON object, surrounding whitespace
/// allowed), in order, or `None` for serde_json to decide.
#[cfg(test)]
pub fn object_members(text: &[u8]) -> Option<Vec<Member<'_>>> {
    let mut out = Vec::new();
    for_each_member(text, |k, v| out.push((k, v)))?;
    Some(out)
}

/// Call `f` with each member of `text` (one JSON object, surrounding
/// whitespace allowed), in order; `None` for serde_json to decide (some
/// members may have been given by then: the caller discards them). Text
/// that is not UTF-8 is declined too.
pub fn for_each_member<'a>(text: &'a [u8], mut f: impl FnMut(Cow<'a, str>, Raw<'a>)) -> Option<()> {
    let mut s = Scanner { b: text, i: 0 };
    s.ws();
    s.eat(b'{')?;
    s.ws();
    if s.peek()? == b'}' {
        s.i += 1;
    } else {
        loop {
            let start = s.i + 1;
            if s.string()? {
                return None; // an escaped key: serde_json decodes it
            }
            let key = scanned(&text[start..s.i - 1]);
            s.ws();
            s.eat(b':')?;
            s.ws();
            let value = s.i;
            let escaped = if s.peek()? == b'"' {
                s.string()?
            } else {
                s.value(0)?;
                false
            };
            let raw = Raw {
                text: scanned(&text[value..s.i]),
                escaped,
            };
            f(Cow::Borrowed(key), raw);
            s.ws();
            match s.next()? {
                b',' => s.ws(),
                b'}' => break,
                _ => return None,
            }
        }
    }
    s.ws();
    (s.i == s.b.len()).then_some(())
}

/// Bytes the scanner accepted (a key, or a whole value) as text.
fn scanned(b: &[u8]) -> &str {
    debug_assert!(std::str::from_utf8(b).is_ok(), "{b:?}");
    // SAFETY: the scanner accepts non-ASCII bytes only inside strings and
    // only as runs of valid UTF-8 (see `Scanner::string`), every other
    // byte it accepts is ASCII, and `b` is a whole key or value it
    // accepted, so its non-ASCII runs start and end on character
    // boundaries (they end at an ASCII byte).
    unsafe { std::str::from_utf8_unchecked(b) }
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
}

impl Scanner<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn next(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.i += 1;
        Some(c)
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.next()? == c).then_some(())
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.i += 1;
        }
    }

    /// A string starting at the cursor; whether it had escapes.
    fn string(&mut self) -> Option<bool> {
        let b = self.b;
        if b.get(self.i) != Some(&b'"') {
            return None;
        }
        let mut i = self.i + 1;
        let mut escaped = false;
        loop {
            i = skip_plain::<true>(b, i);
            match *b.get(i)? {
                b'"' => {
                    self.i = i + 1;
                    return Some(escaped);
                }
                b'\\' => {
                    escaped = true;
                    match *b.get(i + 1)? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => i += 2,
                        b'u' => i += unicode_escape(b, i)?,
                        _ => return None,
                    }
                }
                0x80.. => {
                    // Non-ASCII: the run up to the next byte that matters
                    // must be UTF-8 (no character holds an ASCII byte, so
                    // the run ends on a character boundary).
                    let end = skip_plain::<false>(b, i);
                    std::str::from_utf8(&b[i..end]).ok()?;
                    i = end;
                }
                _ => return None, // a control character
            }
        }
    }

    fn value(&mut self, depth: usize) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(|_| ()),
            b'{' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                    return Some(());
                }
                let mut keys = Keys::new();
                loop {
                    let start = self.i + 1;
                    let escaped = self.string()?;
                    // A key the object already has: serde_json decides (a
                    // repeat is quarantined unless its values agree).
                    if !keys.insert(self.b, start, self.i - 1, escaped) {
                        return None;
                    }
                    self.ws();
                    self.eat(b':')?;
                    self.ws();
                    self.value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => self.ws(),
                        b'}' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b'[' => {
                if depth >= MAX_DEPTH {
                    return None;
                }
                self.i += 1;
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                    return Some(());
                }
                loop {
                    self.value(depth + 1)?;
                    self.ws();
                    match self.next()? {
                        b',' => self.ws(),
                        b']' => return Some(()),
                        _ => return None,
                    }
                }
            }
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' => {
                self.i += 1;
                self.number()
            }
            b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.i..self.i + word.len())? != word {
            return None;
        }
        self.i += word.len();
        Some(())
    }

    /// `0|[1-9][0-9]*`, then an optional fraction and exponent, each with
    /// at least one digit (the sign was taken).
    fn number(&mut self) -> Option<()> {
        match self.next()? {
            b'0' => {
                if self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    return None;
                }
            }
            b'1'..=b'9' => self.digits(),
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            self.some_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.i += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.i += 1;
            }
            self.some_digits()?;
        }
        Some(())
    }

    fn digits(&mut self) {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
    }

    fn some_digits(&mut self) -> Option<()> {
        let start = self.i;
        self.digits();
        (self.i > start).then_some(())
    }
}

/// The keys of one nested object so far. Most objects have a few dozen
/// at most: those are found by a 64-bit fingerprint of the key's text
/// (escapes decoded, so `"\u00e9"` and `"é"` agree), compared in a flat
/// array; the bytes are compared only when two agree, and when either has
/// escapes such a match is left to serde_json. A larger object spills its
/// keys into a set (one with escaped keys, to serde_json).
struct Keys<'a> {
    fingerprints: [u64; Keys::FEW],
    /// The keys as written (between the quotes).
    keys: [&'a [u8]; Keys::FEW],
    /// Bit i: key i has escapes.
    escaped: u32,
    n: usize,
    many: std::collections::HashSet<&'a [u8]>,
}

impl<'a> Keys<'a> {
    const FEW: usize = 32;

    fn new() -> Self {
        Keys {
            fingerprints: [0; Self::FEW],
            keys: [&[]; Self::FEW],
            escaped: 0,
            n: 0,
            many: std::collections::HashSet::new(),
        }
    }

    /// Add the key `b[start..end]` (`escaped`: it has escapes); `false`
    /// if the object may have it already (serde_json then decides).
    fn insert(&mut self, b: &'a [u8], start: usize, end: usize, escaped: bool) -> bool {
        let key = &b[start..end];
        if self.n < Self::FEW {
            let fp = if escaped {
                // The scanner accepted the string, quotes included.
                match serde_json::from_slice::<String>(&b[start - 1..=end]) {
                    Ok(text) => fingerprint(text.as_bytes()),
                    Err(_) => return false,
                }
            } else {
                fingerprint(key)
            };
            for (i, seen) in self.fingerprints[..self.n].iter().enumerate() {
                let raw_both = !escaped && self.escaped & (1 << i) == 0;
                if *seen == fp && (!raw_both || self.keys[i] == key) {
                    return false;
                }
            }
            self.fingerprints[self.n] = fp;
            self.keys[self.n] = key;
            self.escaped |= u32::from(escaped) << self.n;
            self.n += 1;
            return true;
        }
        if escaped || self.escaped != 0 {
            return false;
        }
        if self.many.is_empty() {
            self.many.extend(self.keys);
        }
        self.many.insert(key)
    }
}

/// A key's fingerprint: its length and bytes folded 8 at a time (FxHash's
/// step). Equal keys have equal ones; a collision only costs a compare.
fn fingerprint(key: &[u8]) -> u64 {
    const K: u64 = 0x517c_c1b7_2722_0a95;
    let step = |h: u64, w: u64| (h.rotate_left(5) ^ w).wrapping_mul(K);
    let mut chunks = key.chunks_exact(8);
    let mut h = step(0, key.len() as u64);
    for c in &mut chunks {
        h = step(h, u64::from_le_bytes(c.try_into().expect("8 bytes")));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        w[..rest.len()].copy_from_slice(rest);
        h = step(h, u64::from_le_bytes(w));
    }
    h
}

/// The length of the `\uXXXX` escape at `b[at..]` (12 for a surrogate
/// pair), or `None` when it is not four hex digits or is a surrogate
/// outside a pair, which is not Unicode text (RFC 8259 §8.2 leaves such
/// strings' meaning open; serde_json's `RawValue` takes them, but any
/// reader that decodes the string, silver's JSON functions among them,
/// fails on them).
fn unicode_escape(b: &[u8], at: usize) -> Option<usize> {
    match hex4(b.get(at + 2..at + 6)?)? {
        0xD800..=0xDBFF => {
            let low = b.get(at + 6..at + 12)?;
            (low.starts_with(b"\\u") && matches!(hex4(&low[2..]), Some(0xDC00..=0xDFFF)))
                .then_some(12)
        }
        0xDC00..=0xDFFF => None,
        _ => Some(6),
    }
}

fn hex4(h: &[u8]) -> Option<u16> {
    h.iter().try_fold(0u16, |n, &c| {
        Some(n << 4 | (c as char).to_digit(16)? as u16)
    })
}

/// The offset of the first `\u` escape in JSON text `b` that is a
/// surrogate outside a pair (see [`unicode_escape`]), if any.
pub fn unpaired_surrogate(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(at) = b
        .get(i..)
        .and_then(|r| memchr::memchr(b'\\', r))
        .map(|j| i + j)
    {
        i = at + 2;
        if b.get(at + 1) == Some(&b'u') {
            match unicode_escape(b, at) {
                Some(len) => i = at + len,
                None if b.get(at + 2..at + 6).and_then(hex4).is_some() => return Some(at),
                None => {}
            }
        }
    }
    None
}

/// How many levels of arrays and objects JSON text `b` nests at its
/// deepest (an object holding only scalars is 1). Strings are skipped.
/// One pass, without recursion, whatever the depth.
pub fn nesting(b: &[u8]) -> usize {
    let (mut depth, mut deepest, mut i) = (0usize, 0usize, 0usize);
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => {
                // To the closing quote, over escapes.
                i += 1;
                loop {
                    match b.get(i..).and_then(|r| memchr::memchr2(b'"', b'\\', r)) {
                        Some(j) if b[i + j] == b'\\' => i += j + 2,
                        Some(j) => {
                            i += j;
                            break;
                        }
                        None => return deepest,
                    }
                }
            }
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    deepest
}

/// The index of the first byte at or after `i` that needs attention inside
/// a string: a quote, a backslash, a control character or (with
/// `NON_ASCII`) a byte above 0x7F (8 bytes at a time), or `b.len()`.
fn skip_plain<const NON_ASCII: bool>(b: &[u8], mut i: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while let Some(chunk) = b.get(i..i + 8) {
        let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
        let special = zero(w ^ (ONES * u64::from(b'"')))
            | zero(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w & HIGH)
            | if NON_ASCII { w & HIGH } else { 0 };
        if special != 0 {
            // The lowest flagged byte is a real one (borrows only run
            // upwards); the bytes before it are plain.
            return i + (special.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while let Some(&c) = b.get(i) {
        if c == b'"' || c == b'\\' || c < 0x20 || (NON_ASCII && c >= 0x80) {
            break;
        }
        i += 1;
    }
    i
}

/// serde_json's answer: the members of an object, keys decoded and
/// values as `RawValue` text, or an error. What the scanner is checked
/// against, by the unit tests and by `fuzz/` (`make fuzz`), and what
/// `json_members` (`crate::udf`) falls back to where the scanner declines.
pub fn serde_members(text: &str) -> Result<Vec<(String, String)>, serde_json::Error> {
    use serde::de::{Deserializer, MapAccess, Visitor};
    use serde_json::value::RawValue;
    use std::fmt;
    struct Members(Vec<(String, String)>);
    impl<'de> serde::Deserialize<'de> for Members {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Members;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Members, A::Error> {
                    let mut out = Vec::new();
                    while let Some(k) = m.next_key::<String>()? {
                        let v: &RawValue = m.next_value()?;
                        out.push((k, v.get().to_string()));
                    }
                    Ok(Members(out))
                }
            }
            d.deserialize_map(V)
        }
    }
    serde_json::from_str::<Members>(text).map(|m| m.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scanner never accepts what serde_json rejects, and where it
    /// accepts, it gives serde_json's members.
    fn agrees(text: &str) -> bool {
        let fast = object_members(text.as_bytes());
        if let Some(fast) = &fast {
            let fast: Vec<(String, String)> = fast
                .iter()
                .map(|(k, v)| {
                    assert_eq!(v.escaped, Raw::new(v.text).escaped, "{text:?}");
                    (k.to_string(), v.text.to_string())
                })
                .collect();
            assert_eq!(
                serde_members(text).ok(),
                Some(fast),
                "scanner accepted {text:?}"
            );
        }
        fast.is_some()
    }

    const VALID: &[&str] = &[
        r#"{"event_id":"e1","event_type":"purchase","event_timestamp":"2024-03-15T14:30:00.123+02:00","user_id":"u42","properties":{"order_id":"o9","amount":19.99,"currency":"EUR"}}"#,
        r#"{}"#,
        r#"  { "a" : 1 , "b":[1,2.5,-3e+7,0,-0.0e-1,{"x":[[]]}],"c":{"d":null,"e":true,"f":false} }  "#,
        r#"{"s":"esc \" \\ \/ \b \f \n \r \t \u00e9 \uD83D\uDE00 \udbff\udfff","k":"","e":[]}"#,
        r#"{"a":"\u00e9t\u00E9","n":12345678901234567890.12e-300,"z":0}"#,
        "{\"a\":\"caf\u{e9} \u{1F600}\",\"b\":1}",
        "{\"cl\u{e9}\":{\"\u{4e2d}\u{6587}\":[\"\u{444}\\n\u{430}\",\"x\u{1F600}\"]},\"\u{e9}\":\"\u{e9}\"}",
        r#"{"dup":1,"dup":2}"#,
    ];

    #[test]
    fn accepts_valid_objects_as_serde_json_reads_them() {
        for line in VALID {
            assert!(agrees(line), "scanner declined {line:?}");
        }
    }

    #[test]
    fn declines_what_serde_json_rejects_or_decodes() {
        for bad in [
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":-}"#,
            r#"{"a":+1}"#,
            r#"{"a":1,}"#,
            r#"{"a":[1,]}"#,
            r#"{"a" 1}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul}"#,
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            r#"{"a":"\u12G4"}"#,
            "{\"a\":\"tab\there\"}",
            r#"{"a":1}x"#,
            r#"{"a":1}{}"#,
            r#"{"a\n":1}"#,
            r#"[1]"#,
            r#""s""#,
            r#"{"a":{"b":1}"#,
            r#"{"a":"unterminated}"#,
            r#"{a:1}"#,
            r#"{"a":NaN}"#,
            "",
        ] {
            assert!(!agrees(bad), "scanner accepted {bad:?}");
        }
        // A surrogate outside a pair is left to the caller, which
        // quarantines it (serde_json's `RawValue` takes it).
        for odd in [
            r#"{"a":"\udead"}"#,
            r#"{"a":"\ud800x"}"#,
            r#"{"a":"\uD800\u0041"}"#,
            r#"{"a":"\uD800\uD800"}"#,
            r#"{"a":["\uDC00\uD800"]}"#,
        ] {
            assert!(serde_members(odd).is_ok(), "{odd}");
            assert!(!agrees(odd), "{odd}");
            assert_eq!(unpaired_surrogate(odd.as_bytes()), odd.find('\\'), "{odd}");
        }
        for fine in [
            r#"{"a":"\\udead"}"#,
            r#"{"a":"\u00e9\ud83d\ude00"}"#,
            r#"{"a":"\ud8"}"#,
        ] {
            assert_eq!(unpaired_surrogate(fine.as_bytes()), None, "{fine}");
        }
        // Escaped keys and deep nesting are left to serde_json, which
        // accepts these.
        assert!(serde_members(r#"{"\u0061":1}"#).is_ok());
        assert!(!agrees(r#"{"\u0061":1}"#));
        let deep = format!("{{\"a\":{}1{}}}", "[".repeat(100), "]".repeat(100));
        assert!(serde_members(&deep).is_ok());
        assert!(!agrees(&deep));
        // So are nested objects that repeat a key (the caller quarantines
        // them unless the values agree), escapes decoded, beyond the first
        // 32 keys as well, and larger objects with an escaped key. Keys of
        // other objects, escaped keys that repeat none, and top-level
        // repeats (the caller's), are fine.
        let wide = |repeat: &str| {
            let keys: String = (1..=40).map(|i| format!("\"k{i}\":{i},")).collect();
            format!("{{\"p\":{{{keys}\"{repeat}\":0}}}}")
        };
        for declined in [
            r#"{"p":{"a":1,"a":2}}"#,
            r#"{"p":{"a":1,"a":1}}"#,
            r#"{"p":[{"b":{"a":1,"c":2,"a":3}}]}"#,
            r#"{"p":{"a":1,"\u0061":2}}"#,
            r#"{"p":{"\u00e9":1,"b":2,"é":3}}"#,
            r#"{"p":{"\u00e9":1,"\u00E9":2}}"#,
            &wide("k2"),
            &wide("k32"),
            &wide("k40"),
            &wide(r"\u006b41"),
        ] {
            assert!(serde_members(declined).is_ok(), "{declined}");
            assert!(!agrees(declined), "{declined}");
        }
        for fine in [
            r#"{"p":{"a":1,"b":{"a":2}},"q":{"a":3}}"#,
            r#"{"p":[{"a":1},{"a":2}]}"#,
            r#"{"p":{"ab":1,"a":2,"b":3}}"#,
            r#"{"p":{"abcdefgh1":1,"abcdefgh2":2,"abcdefgh":3,"":4}}"#,
            &wide("k41"),
            r#"{"p":{"\u0061":1,"b":{"\u0061":2}}}"#,
            r#"{"p":{"caf\u00e9":1,"cafe":2,"\u00e9t\u00e9":3}}"#,
        ] {
            assert!(agrees(fine), "{fine}");
        }
    }

    #[test]
    fn keys_find_every_repeat_in_the_array_and_past_it() {
        let line: String = (0..40).map(|i| format!("k{i},")).collect();
        let b = line.as_bytes();
        let spans: Vec<(usize, usize)> = line
            .match_indices(',')
            .scan(0, |start, (end, _)| {
                let span = (*start, end);
                *start = end + 1;
                Some(span)
            })
            .collect();
        for n in 0..=spans.len() {
            let mut keys = Keys::new();
            for &(s, e) in &spans[..n] {
                assert!(keys.insert(b, s, e, false), "{n}");
            }
            for &(s, e) in &spans[..n] {
                assert!(!keys.insert(b, s, e, false), "{n}: {}", &line[s..e]);
            }
        }
        assert_eq!(fingerprint(b"abc"), fingerprint(b"abc"));
        assert_ne!(fingerprint(b"abc"), fingerprint(b"abc\0"));
    }

    #[test]
    fn nesting_counts_levels_outside_strings() {
        for (text, depth) in [
            (&br#"1"#[..], 0),
            (br#"{}"#, 1),
            (br#"{"a":[1,{"b":[]}],"c":{}}"#, 4),
            (br#"{"a":"[[[{{{","b":"\"[[[\\"}"#, 1),
            (br#"[[[]][[[[]]]]]"#, 5),
            // Cut short (the caller has checked the text): as far as it goes.
            (br#"[[{"a":"[[["#, 3),
        ] {
            assert_eq!(nesting(text), depth, "{}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn agrees_with_serde_json_on_mutated_lines() {
        // Every single-byte deletion, and replacements by bytes that matter
        // to JSON, of every valid line: the scanner accepts only what
        // serde_json accepts, with the same members.
        // And bytes that are not ASCII: lead and continuation bytes, and
        // bytes that never occur in UTF-8.
        let specials = b"\"\\{}[]:,.-+eE0190tfnu \t\x01x\x80\xa9\xbf\xc3\xe4\xf0\xc0\xed\xf5\xff";
        let mut accepted = 0;
        let mut checked = 0;
        let mut not_utf8 = 0;
        for line in VALID {
            let bytes = line.as_bytes();
            for i in 0..bytes.len() {
                let mut variants = vec![[&bytes[..i], &bytes[i + 1..]].concat()];
                for &c in specials {
                    let mut v = bytes.to_vec();
                    v[i] = c;
                    variants.push(v);
                    let mut ins = bytes.to_vec();
                    ins.insert(i, c);
                    variants.push(ins);
                }
                for v in variants {
                    match std::str::from_utf8(&v) {
                        Ok(text) => {
                            checked += 1;
                            accepted += usize::from(agrees(text));
                        }
                        Err(_) => {
                            not_utf8 += 1;
                            assert!(object_members(&v).is_none(), "accepted {v:?}");
                        }
                    }
                }
            }
        }
        assert!(checked > 20_000, "{checked}");
        assert!(not_utf8 > 5_000, "{not_utf8}");
        // Many mutants are still valid JSON and must take the fast path.
        assert!(accepted > 1_000, "{accepted} of {checked}");
    }
}
