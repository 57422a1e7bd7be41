//! The ingest fast path's JSON scanner (`src/ingest/scan.rs`) against
//! serde_json: whatever the scanner accepts must be UTF-8 (it hands the
//! text on unchecked), accepted by serde_json, and split into the same
//! members with the same raw value text. Declining is always allowed:
//! serde_json then decides.
#![no_main]
#![allow(dead_code)]

use libfuzzer_sys::fuzz_target;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;

#[path = "../../src/ingest/scan.rs"]
mod scan;

/// serde_json's members of an object: keys decoded, values as raw text.
fn serde_members(text: &str) -> Result<Vec<(String, String)>, serde_json::Error> {
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

fuzz_target!(|data: &[u8]| {
    let mut members = Vec::new();
    let accepted = scan::for_each_member(data, |k, v| members.push((k.to_string(), v)));
    if accepted.is_none() {
        return;
    }
    let text = std::str::from_utf8(data).expect("the scanner accepted text that is not UTF-8");
    let want = serde_members(text)
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
