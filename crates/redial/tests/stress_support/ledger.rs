//! The byte ledger: what became of every frame a send path was offered.
//! Accepted frames must end up received by a server (once), handed back
//! (`SendError`, `Reset::unsent`, `Close::unsent`), counted as discarded
//! (`Stats::sender_dropped`), or lost in flight; the byte totals must
//! balance against redial's `bytes_out`; and the frames one producer sent
//! on one connection arrive in order with no hole but a lost tail.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use redial::Unsent;

use super::frame::{self, FrameId};
use super::Violations;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// A send path took it (returned `Ok`).
    Accepted,
    /// A send path returned an error carrying it: never queued.
    Refused,
    /// Its send was cancelled (a timed-out `write`): it may or may not have
    /// been queued.
    Maybe,
}

#[derive(Debug)]
struct Frame {
    len: usize,
    fate: Option<Fate>,
    /// Handed back whole (in an `Unsent` chunk or a `SendError`).
    handed_back: u32,
    /// Handed back in the error of a later send (a `Sender`'s refused
    /// hand-over): a hole the application was told of.
    in_error: bool,
    /// Handed back as the partly written chunk of a loss.
    partial: bool,
    /// Held by a `Sender` dropped with bytes: queued, or discarded and counted.
    dropped_sender: bool,
    /// Server connections it arrived on, complete.
    received: Vec<u64>,
}

#[derive(Default)]
struct Inner {
    frames: HashMap<FrameId, Frame>,
    /// Lanes whose frames all go to one connection (not a pool's).
    single: HashMap<u32, bool>,
    accepted_bytes: u64,
    maybe_bytes: u64,
    handed_back_bytes: u64,
    received_bytes: u64,
}

/// What the ledger found at the end of a round.
#[derive(Debug, Default, Clone, Copy)]
pub struct Totals {
    pub accepted_frames: u64,
    pub accepted_bytes: u64,
    pub received_frames: u64,
    pub received_bytes: u64,
    pub handed_back_frames: u64,
    pub handed_back_bytes: u64,
    pub refused_frames: u64,
    pub lost_in_flight_frames: u64,
    pub maybe_frames: u64,
    pub discarded_bytes: u64,
    pub bytes_out: u64,
}

#[derive(Default)]
pub struct Ledger {
    inner: Mutex<Inner>,
}

impl Ledger {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn lane(&self, lane: u32, single_connection: bool) {
        self.with(|l| l.single.insert(lane, single_connection));
    }

    fn frame(l: &mut Inner, id: FrameId, len: usize) -> &mut Frame {
        l.frames.entry(id).or_insert(Frame {
            len,
            fate: None,
            handed_back: 0,
            in_error: false,
            partial: false,
            dropped_sender: false,
            received: Vec::new(),
        })
    }

    /// The send of `id` ended: `Ok` (accepted), `Err` (refused), or
    /// cancelled (`None`).
    pub fn sent(&self, v: &Violations, id: FrameId, len: usize, ok: Option<bool>) {
        self.with(|l| {
            let fate = match ok {
                Some(true) => Fate::Accepted,
                Some(false) => Fate::Refused,
                None => Fate::Maybe,
            };
            match fate {
                Fate::Accepted => l.accepted_bytes += len as u64,
                Fate::Maybe => l.maybe_bytes += len as u64,
                Fate::Refused => {}
            }
            let f = Self::frame(l, id, len);
            if f.fate.is_some() {
                v.add(format!("{id} sent twice by the test itself"));
            }
            f.fate = Some(fate);
        });
    }

    /// Frames earlier accepted, given back in an error (a `Sender`'s).
    pub fn handed_back_bytes(&self, v: &Violations, data: &[u8], except: Option<FrameId>) {
        match frame::all(data) {
            Ok(frames) => self.with(|l| {
                for (id, len) in frames {
                    if Some(id) == except {
                        continue;
                    }
                    l.handed_back_bytes += len as u64;
                    let f = Self::frame(l, id, len);
                    f.handed_back += 1;
                    f.in_error = true;
                }
            }),
            Err(e) => v.add(format!(
                "bytes handed back in an error are not whole sends: {e}"
            )),
        }
    }

    /// An `Unsent` from a reset or a close.
    pub fn unsent(&self, v: &Violations, unsent: &Unsent, what: &str) {
        let mut found = Vec::new();
        for chunk in unsent.chunks() {
            match frame::whole(chunk) {
                Ok(id) => found.push((id, chunk.len())),
                Err(e) => v.add(format!(
                    "{what}: an unsent chunk is not one whole send: {e}"
                )),
            }
        }
        let partial = unsent.partial().map(|p| (frame::whole(&p.data), p));
        self.with(|l| {
            for (id, len) in found {
                l.handed_back_bytes += len as u64;
                Self::frame(l, id, len).handed_back += 1;
            }
            match partial {
                Some((Ok(id), p)) => {
                    if p.written >= p.data.len() {
                        v.add(format!(
                            "{what}: partial chunk {id} says all {} bytes were written",
                            p.written
                        ));
                    }
                    l.handed_back_bytes += p.data.len().saturating_sub(p.written) as u64;
                    let f = Self::frame(l, id, p.data.len());
                    if f.partial {
                        v.add(format!("{what}: {id} handed back as partial twice"));
                    }
                    f.partial = true;
                }
                Some((Err(e), _)) => v.add(format!(
                    "{what}: the partial chunk is not one whole send: {e}"
                )),
                None => {}
            }
        });
    }

    /// Frames a `Sender` held when it was dropped.
    pub fn dropped_sender(&self, held: &[(FrameId, usize)]) {
        self.with(|l| {
            for &(id, len) in held {
                Self::frame(l, id, len).dropped_sender = true;
            }
        });
    }

    /// A server read a whole frame on its connection `conn`.
    pub fn received(&self, id: FrameId, len: usize, conn: u64) {
        self.with(|l| {
            l.received_bytes += len as u64;
            Self::frame(l, id, len).received.push(conn);
        });
    }

    /// Checks every frame and the byte balance, once nothing moves any
    /// more: `bytes_out` and `discarded` are the sums over every connection
    /// of the round.
    pub fn settle(&self, v: &Violations, bytes_out: u64, discarded: u64) -> Totals {
        self.with(|l| {
            let mut t = Totals {
                accepted_bytes: l.accepted_bytes,
                received_bytes: l.received_bytes,
                handed_back_bytes: l.handed_back_bytes,
                discarded_bytes: discarded,
                bytes_out,
                ..Totals::default()
            };
            // lane -> server connection -> sequence numbers received there.
            let mut arrivals: HashMap<u32, BTreeMap<u64, Vec<u32>>> = HashMap::new();
            for (id, f) in &l.frames {
                match f.fate {
                    Some(Fate::Accepted) => t.accepted_frames += 1,
                    Some(Fate::Refused) => t.refused_frames += 1,
                    Some(Fate::Maybe) => t.maybe_frames += 1,
                    None => {}
                }
                t.handed_back_frames += u64::from(f.handed_back);
                t.received_frames += f.received.len() as u64;
                if f.received.len() > 1 {
                    v.add(format!("{id} arrived {} times", f.received.len()));
                }
                let came_back = f.handed_back > 0;
                if f.handed_back > 1 || (came_back && f.partial) {
                    v.add(format!("{id} handed back more than once"));
                }
                match f.fate {
                    None if !f.received.is_empty() || came_back || f.partial => {
                        v.add(format!("{id} turned up but no send of it ended (received {:?})", f.received))
                    }
                    Some(Fate::Refused) if !f.received.is_empty() => {
                        v.add(format!("{id} was refused with an error, yet a server received it"))
                    }
                    Some(Fate::Refused) if f.partial => {
                        v.add(format!("{id} was refused with an error, yet partly written"))
                    }
                    _ => {}
                }
                if came_back && !f.received.is_empty() {
                    v.add(format!("{id} was handed back whole, yet a server received it"));
                }
                if f.partial && !f.received.is_empty() {
                    v.add(format!("{id} was handed back as cut, yet a server received it whole"));
                }
                if f.fate == Some(Fate::Accepted)
                    && f.received.is_empty()
                    && !came_back
                    && !f.partial
                    && !f.dropped_sender
                {
                    t.lost_in_flight_frames += 1;
                }
                if l.single.get(&id.lane) == Some(&true) {
                    for &c in &f.received {
                        arrivals.entry(id.lane).or_default().entry(c).or_default().push(id.seq);
                    }
                }
            }
            // No hole between two frames of one producer on one connection:
            // whatever was accepted between them arrived there too.
            for (lane, per_conn) in &arrivals {
                for (conn, seqs) in per_conn {
                    let (lo, hi) = (seqs.iter().min().copied(), seqs.iter().max().copied());
                    let (Some(lo), Some(hi)) = (lo, hi) else { continue };
                    for seq in lo..=hi {
                        let id = FrameId { lane: *lane, seq };
                        let Some(f) = l.frames.get(&id) else { continue };
                        if f.fate == Some(Fate::Accepted) && !f.in_error && !f.received.contains(conn) {
                            v.add(format!(
                                "{id} was accepted and is missing between seq {lo} and {hi} on server connection {conn} \
                                 (handed back: {}, cut: {}, dropped sender: {})",
                                f.handed_back, f.partial, f.dropped_sender
                            ));
                        }
                    }
                }
            }
            let accounted = bytes_out + l.handed_back_bytes + discarded;
            if accounted < l.accepted_bytes || accounted > l.accepted_bytes + l.maybe_bytes {
                v.add(format!(
                    "byte ledger: accepted {} (+ up to {} of cancelled sends) != written {} + handed back {} + discarded {}",
                    l.accepted_bytes, l.maybe_bytes, bytes_out, l.handed_back_bytes, discarded
                ));
            }
            if l.received_bytes > bytes_out {
                v.add(format!("servers received {} bytes, more than the {bytes_out} written", l.received_bytes));
            }
            t
        })
    }
}
