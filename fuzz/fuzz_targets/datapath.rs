//! The send path without sockets (`redial::fuzzing::DataPath`, which runs
//! the library's own queue, `Sender`, driver batch, partial writes and
//! hand-backs) driven by arbitrary operation sequences; the byte ledger
//! must balance after every step.
//!
//! Input bytes: the queue limit and the outage policy, then (operation,
//! size) pairs. Checked after every step: `DataPath::check` (accepted =
//! written + returned + queued + discarded, what the application kept is
//! what the ledger says was returned, the batch's unwritten bytes are the
//! queue's in-flight count); the ledger's totals never shrink (except
//! `returned`, by what moves to `discarded`); a refused send hands back
//! exactly its bytes (a `Sender`'s: everything it held, this send last);
//! a path that was closed refuses every send.

#![no_main]

use libfuzzer_sys::fuzz_target;
use redial::fuzzing::{DataPath, Ledger};
use redial::SendError;

#[path = "../common/bytes.rs"]
mod bytes;
use bytes::Bytes;

fn refused(r: Result<(), SendError>, data: &[u8], closed: bool) {
    match r {
        Ok(()) => assert!(!closed, "a send accepted after the close"),
        Err(e) => assert_eq!(e.data(), data, "a refused send hands back its bytes"),
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let limit = usize::from(b.u16());
    let outage = (b.u8() & 1 == 1).then(|| usize::from(b.u16()));
    let mut p = DataPath::new(limit, outage);
    let mut closed = false;
    let mut before = Ledger::default();
    while !b.0.is_empty() {
        let op = b.u8();
        let n = usize::from(b.u8());
        // Sizes from empty to about 64 KiB, small ones most often.
        let payload = vec![op; n * n];
        match op % 12 {
            0 => p.connect(),
            1 => refused(p.send(&payload), &payload, closed),
            2 => refused(p.socket_send(&payload), &payload, closed),
            3 => {
                if let Err(e) = p.sender_send(&payload) {
                    assert!(
                        e.data().ends_with(&payload),
                        "a refused hand-over ends with this send"
                    );
                } else {
                    assert!(
                        !closed || payload.is_empty(),
                        "a sender's send accepted after the close"
                    );
                }
            }
            4 => {
                let _ = p.sender_flush();
            }
            5 => p.sender_drop(),
            6 => p.take_batch(),
            7 => {
                let _ = p.write(n * n * 4);
            }
            8 => {
                p.reset(n & 1 == 0);
            }
            9 if n < 16 => {
                p.close(n & 1 == 0);
                closed = true;
            }
            _ => {
                p.take_batch();
                let _ = p.write(usize::MAX);
            }
        }
        p.check();
        let now = p.ledger();
        assert!(
            now.accepted >= before.accepted,
            "accepted shrank: {before:?} -> {now:?}"
        );
        assert!(
            now.written >= before.written,
            "written shrank: {before:?} -> {now:?}"
        );
        assert!(
            now.discarded >= before.discarded,
            "discarded shrank: {before:?} -> {now:?}"
        );
        assert!(
            now.returned + now.discarded >= before.returned + before.discarded,
            "returned shrank without a discard: {before:?} -> {now:?}"
        );
        before = now;
    }
});
