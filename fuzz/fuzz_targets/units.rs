//! The CLI's duration and size parsers never panic, and what they print
//! (`format_duration`, `format_size`) reads back.
//!
//! Input: UTF-8 text, given to every parser of `redial_cli::units`; the
//! parsed values are then printed and parsed again.

#![no_main]

use libfuzzer_sys::fuzz_target;
use redial_cli::units::{
    format_duration, format_size, parse_backoff, parse_duration, parse_size, parse_size_usize,
};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };

    if let Ok(d) = parse_duration(s) {
        // What the tool prints about a duration must be valid input again
        // (people paste it back into flags).
        let printed = format_duration(d);
        if let Err(e) = parse_duration(&printed) {
            panic!("{s:?} = {d:?} prints as {printed:?}, which does not parse: {e}");
        }
    } else if let Err(e) = parse_duration(s) {
        assert_eq!(e.input(), s, "the error quotes the input");
    }

    match parse_size(s) {
        Ok(n) => {
            assert_eq!(parse_size_usize(s).ok(), usize::try_from(n).ok());
            // format_size rounds to one decimal, so the round trip is only
            // checked for being readable, below a PiB (format_size's largest
            // unit, which parse_size does not know).
            if n < 1 << 50 {
                let printed = format_size(n);
                if let Err(e) = parse_size(&printed) {
                    panic!("{s:?} = {n} prints as {printed:?}, which does not parse: {e}");
                }
            }
        }
        Err(e) => {
            assert_eq!(e.input(), s, "the error quotes the input");
            assert!(parse_size_usize(s).is_err());
        }
    }

    if let Ok((lo, hi)) = parse_backoff(s) {
        assert!(!lo.is_zero() && lo <= hi, "{s:?} gave {lo:?}..{hi:?}");
    }
});
