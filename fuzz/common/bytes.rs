//! Reads fuzzer input as a stream of numbers; past the end every read
//! yields zeros, so any input drives a whole run.

// Each fuzz target includes this file and uses only part of it.
#![allow(dead_code)]

pub struct Bytes<'a>(pub &'a [u8]);

impl Bytes<'_> {
    pub fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }

    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    pub fn u64(&mut self) -> u64 {
        u64::from(self.u16())
            | u64::from(self.u16()) << 16
            | u64::from(self.u16()) << 32
            | u64::from(self.u16()) << 48
    }

    /// A duration anywhere in `Duration`'s range: milliseconds, seconds,
    /// any seconds and nanoseconds, or `Duration::MAX`, so that the
    /// arithmetic on users' durations is tried at its edges.
    pub fn duration(&mut self) -> std::time::Duration {
        use std::time::Duration;
        match self.u8() % 4 {
            0 => Duration::from_millis(u64::from(self.u16())),
            1 => Duration::from_secs(u64::from(self.u16()) << 16 | u64::from(self.u16())),
            2 => Duration::new(self.u64(), u32::from(self.u16()) * 15_259 % 1_000_000_000),
            _ => Duration::MAX,
        }
    }

    pub fn take(&mut self, n: usize) -> &[u8] {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head
    }
}
