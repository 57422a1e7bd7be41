//! The ingest fast path's JSON scanner (`src/ingest/scan.rs`) against
//! serde_json: whatever the scanner accepts must be UTF-8 (it hands the
//! text on unchecked), accepted by serde_json, and split into the same
//! members with the same raw value text. Declining is always allowed:
//! serde_json then decides.
#![no_main]
#![allow(dead_code)]

use libfuzzer_sys::fuzz_target;

#[path = "../../src/ingest/scan.rs"]
mod scan;

fuzz_target!(|data: &[u8]| {
    let mut members = Vec::new();
    let accepted = scan::for_each_member(data, |k, v| members.push((k.to_string(), v)));
    if accepted.is_none() {
        return;
    }
    let text = std::str::from_utf8(data).expect("the scanner accepted text that is not UTF-8");
    let want = scan::serde_members(text)
        .unwrap_or_else(|e| panic!("the scanner accepted what serde_json rejects: {e}"));
    let got: Vec<(String, String)> = members
        .iter()
        .map(|(k, v)| (k.clone(), v.text.to_string()))
        .collect();
    assert_eq!(got, want);
    for (_, v) in &members {
        assert_eq!(v.escaped, scan::Raw::new(v.text).escaped, "{:?}", v.text);
    }
});
