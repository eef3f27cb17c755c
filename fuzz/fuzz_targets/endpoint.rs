//! Endpoint parsing never panics, and whatever parses prints back to text
//! that parses to the same endpoint.
//!
//! Input: UTF-8 text. The whole text goes to `str::parse::<Endpoint>()`;
//! its lines go to `Endpoint::any` (the list form); and the text split at
//! its last `#` into (host, port) goes through the tuple form.

#![no_main]

use libfuzzer_sys::fuzz_target;
use redial::{Endpoint, ToEndpoint};

/// Display is the canonical written form: it must parse again, to an equal
/// endpoint, and print the same (a user copies it from a log into a config).
fn round_trips(e: &Endpoint) {
    let text = e.to_string();
    let again: Endpoint = match text.parse() {
        Ok(again) => again,
        Err(err) => panic!("{e:?} prints as {text:?}, which does not parse: {err}"),
    };
    assert_eq!(&again, e, "{text:?} parses to a different endpoint");
    assert_eq!(again.to_string(), text);
}

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(e) = s.parse::<Endpoint>() {
        round_trips(&e);
        let _ = e.host();
    }

    // The list form: every member must parse on its own, and the list
    // prints as any(members...), flattened.
    let lines: Vec<&str> = s.lines().collect();
    match Endpoint::any(lines.iter().copied()) {
        Ok(list) => {
            let members: Vec<String> = lines
                .iter()
                .map(|l| l.parse::<Endpoint>().map(|e| e.to_string()))
                .collect::<Result<_, _>>()
                .unwrap_or_else(|err| panic!("any() accepted {lines:?} but a member fails: {err}"));
            assert_eq!(list.to_string(), format!("any({})", members.join(", ")));
            assert_eq!(list.host(), None);
        }
        Err(_) => assert!(
            lines.is_empty() || lines.iter().any(|l| l.parse::<Endpoint>().is_err()),
            "any() refused {lines:?} although every member parses"
        ),
    }

    // The (host, port) form.
    if let Some((host, port)) = s.rsplit_once('#') {
        if let Ok(port) = port.parse::<u16>() {
            // ("unix", port) and ("[]", port) broke this once; both are
            // regression tests in crates/redial/tests/hostile.rs.
            if let Ok(e) = (host, port).to_endpoint() {
                round_trips(&e);
            }
        }
    }
});
