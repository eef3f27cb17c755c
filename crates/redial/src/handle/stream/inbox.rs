//! What a [`Stream`](super::Stream) holds between its driver and its
//! reader and writer: the bytes read and not yet taken, one marker per lost
//! connection, the resets not yet reported, and the bytes handed back.
//!
//! The driver's side ([`StreamHandler`]) only appends; the stream's side
//! takes. Every lost connection is reported once, in order, to whichever of
//! read, write or flush asks first; a report to the writer drops the unread
//! bytes of the lost connection (they are counted in the report), so a
//! reader never gets them glued to the next connection's.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Waker;

use tracing::{debug, warn};

use crate::handle::socket::Socket;
use crate::handler::{Handler, Resume};
use crate::queue::{Pushed, Refused};
use crate::reset::{Close, CloseReason, Partial, Reset, Unsent};

use super::error::StreamReset;

/// Bytes a [`Stream`](super::Stream) holds for its reader before it stops
/// reading from the socket (TCP flow control then slows the peer).
pub(crate) const STREAM_READ_LIMIT: usize = 256 * 1024;

pub(crate) enum Piece {
    /// Bytes read, and how many of them the reader has taken.
    Data(Vec<u8>, usize),
    /// The connection of this generation was lost here.
    Lost(u64),
}

#[derive(Default)]
pub(crate) struct Inbox {
    pub(crate) pieces: VecDeque<Piece>,
    /// Bytes in `pieces` not yet taken by the reader.
    pub(crate) buffered: usize,
    /// Lost connections not yet reported, oldest first.
    unreported: VecDeque<StreamReset>,
    pub(crate) generation: u64,
    /// Ended for good, and why.
    pub(crate) closed: Option<CloseReason>,
    /// What resets and the close handed back, one entry per connection (each
    /// may have its own cut chunk), oldest first.
    pub(crate) handed_back: Vec<Unsent>,
    /// Transparent streams: what losses left unsent, re-queued before any
    /// new write.
    pub(crate) backlog: Backlog,
    pub(crate) reader: Option<Waker>,
    pub(crate) writer: Option<Waker>,
}

/// Bytes of an unsent record that never reached the kernel.
pub(crate) fn unsent_bytes(u: &Unsent) -> usize {
    u.len()
        + u.partial()
            .map_or(0, |p| p.data.len().saturating_sub(p.written))
}

impl Inbox {
    /// The oldest lost connection not yet reported, for a writer (or a
    /// flush): the unread bytes read from it are dropped and counted, so
    /// the reader goes on with the next connection's bytes only.
    pub(crate) fn report_to_writer(&mut self) -> Option<StreamReset> {
        let mut lost = self.unreported.pop_front()?;
        while let Some(piece) = self.pieces.pop_front() {
            match piece {
                Piece::Data(data, pos) => {
                    let n = data.len().saturating_sub(pos);
                    lost.unread_dropped += n;
                    self.buffered = self.buffered.saturating_sub(n);
                }
                Piece::Lost(g) if g == lost.generation => break,
                // Reported already (to the reader): nothing to do.
                Piece::Lost(_) => {}
            }
        }
        if lost.unread_dropped > 0 {
            debug!(
                generation = lost.generation,
                bytes = lost.unread_dropped,
                "unread bytes of a lost connection dropped"
            );
        }
        Some(lost)
    }

    /// The reader reached the marker of connection `generation`: the loss,
    /// if no writer was told of it yet.
    pub(crate) fn report_to_reader(&mut self, generation: u64) -> Option<StreamReset> {
        if self
            .unreported
            .front()
            .is_some_and(|l| l.generation == generation)
        {
            return self.unreported.pop_front();
        }
        None
    }

    /// Lost connections not yet reported.
    #[cfg(test)]
    pub(crate) fn unreported(&self) -> usize {
        self.unreported.len()
    }
}

/// Transparent streams: the chunks that losses left unsent, oldest first,
/// each with how many of its bytes reached an earlier connection's kernel
/// (a chunk cut by a loss is re-sent whole). They go into the next
/// connection's queue before any new write, as much of them as the queue
/// takes; the writer pushes the rest as room is made, before its own bytes.
/// None is dropped: what the stream closes with is handed back.
#[derive(Default)]
pub(crate) struct Backlog {
    chunks: VecDeque<(Vec<u8>, usize)>,
}

impl Backlog {
    /// Puts what a loss left unsent in front: it was written before
    /// anything still waiting here.
    fn put_back(&mut self, unsent: &Unsent) {
        let mut older: VecDeque<(Vec<u8>, usize)> = VecDeque::new();
        if let Some(p) = unsent.partial() {
            older.push_back((p.data.clone(), p.written));
        }
        older.extend(unsent.chunks().map(|c| (c.to_vec(), 0)));
        older.append(&mut self.chunks);
        self.chunks = older;
    }

    /// Pushes the chunks, oldest first, until one is refused: it stays, and
    /// the error says why and how long it is.
    pub(crate) fn push_with(
        &mut self,
        mut push: impl FnMut(&[u8]) -> Result<Pushed, Refused>,
    ) -> Result<(), (Refused, usize)> {
        while let Some((chunk, _)) = self.chunks.front() {
            push(chunk).map_err(|r| (r, chunk.len()))?;
            self.chunks.pop_front();
        }
        Ok(())
    }

    /// Everything left, as hand-backs: a chunk that reached a kernel in
    /// part is the partial of a new entry.
    fn take_unsent(&mut self) -> Vec<Unsent> {
        let mut out: Vec<Unsent> = Vec::new();
        for (chunk, written) in std::mem::take(&mut self.chunks) {
            if written > 0 {
                out.push(Unsent {
                    partial: Some(Partial {
                        data: chunk,
                        written,
                    }),
                    ..Unsent::default()
                });
                continue;
            }
            if out.is_empty() {
                out.push(Unsent::default());
            }
            if let Some(last) = out.last_mut() {
                last.append(&chunk, &[chunk.len()]);
            }
        }
        out
    }
}

pub(crate) struct StreamShared {
    inbox: Mutex<Inbox>,
    pub(crate) transparent: bool,
}

impl StreamShared {
    pub(crate) fn new(transparent: bool) -> Self {
        StreamShared {
            inbox: Mutex::new(Inbox::default()),
            transparent,
        }
    }

    pub(crate) fn inbox(&self) -> MutexGuard<'_, Inbox> {
        self.inbox.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub(crate) fn wake(w: &mut Option<Waker>) {
    if let Some(w) = w.take() {
        w.wake();
    }
}

/// The stream's side of the driver.
pub(crate) struct StreamHandler {
    pub(crate) shared: Arc<StreamShared>,
}

impl Handler for StreamHandler {
    fn on_connect(&mut self, sock: &Socket) {
        let mut inbox = self.shared.inbox();
        inbox.generation = sock.generation();
        // Transparent mode re-queues what never left, before new writes;
        // what the queue does not take now, the writer pushes later.
        let shared = &sock.inner.shared;
        let _ = inbox
            .backlog
            .push_with(|c| shared.push(Some(sock.generation()), c));
        wake(&mut inbox.writer);
    }

    fn on_data(&mut self, sock: &Socket, data: &[u8]) {
        let mut inbox = self.shared.inbox();
        inbox.buffered += data.len();
        inbox.pieces.push_back(Piece::Data(data.to_vec(), 0));
        if inbox.buffered >= STREAM_READ_LIMIT {
            sock.inner.shared.pause_reads(true);
        }
        wake(&mut inbox.reader);
    }

    fn on_reset(&mut self, reset: &Reset) -> Resume {
        let mut inbox = self.shared.inbox();
        if self.shared.transparent {
            inbox.backlog.put_back(&reset.take_unsent());
        } else {
            let unsent = reset.take_unsent();
            inbox.unreported.push_back(StreamReset {
                reason: reset.reason().clone(),
                generation: reset.generation(),
                uptime: reset.uptime(),
                written: reset.written(),
                acked: reset.acked(),
                unacked: reset.unacked(),
                unsent_bytes: unsent_bytes(&unsent),
                unread_dropped: 0,
            });
            inbox.pieces.push_back(Piece::Lost(reset.generation()));
            if !unsent.is_empty() {
                inbox.handed_back.push(unsent);
            }
        }
        wake(&mut inbox.reader);
        wake(&mut inbox.writer);
        Resume::Reconnect
    }

    fn on_close(&mut self, close: &Close) {
        let mut inbox = self.shared.inbox();
        inbox.closed = Some(close.reason().clone());
        if !close.unsent().is_empty() {
            inbox.handed_back.push(close.take_unsent());
        }
        // Never re-queued: written after what the close handed back.
        let backlog = inbox.backlog.take_unsent();
        if !backlog.is_empty() {
            warn!(
                bytes = backlog.iter().map(unsent_bytes).sum::<usize>(),
                "a transparent stream closed before re-sending what a loss left unsent; \
                 take_unsent has it"
            );
        }
        inbox.handed_back.extend(backlog);
        wake(&mut inbox.reader);
        wake(&mut inbox.writer);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::reset::ResetReason;

    #[test]
    fn a_backlog_keeps_order_and_hands_back_cut_chunks_as_partials() {
        let mut first = Unsent {
            partial: Some(Partial {
                data: b"ab".to_vec(),
                written: 1,
            }),
            ..Unsent::default()
        };
        first.append(b"cdef", &[2, 4]);
        let mut backlog = Backlog::default();
        backlog.put_back(&first);
        // Two pushed, then the queue is full.
        let mut taken = Vec::new();
        let refused = backlog.push_with(|c| {
            if taken.len() == 2 {
                return Err(Refused::Full {
                    queued: 4,
                    limit: 4,
                });
            }
            taken.push(c.to_vec());
            Ok(Pushed::default())
        });
        assert!(matches!(refused, Err((Refused::Full { .. }, 2))));
        assert_eq!(taken, [b"ab".to_vec(), b"cd".to_vec()]);
        // A later loss cut "xy" after one byte; it goes in front.
        let mut second = Unsent {
            partial: Some(Partial {
                data: b"xy".to_vec(),
                written: 1,
            }),
            ..Unsent::default()
        };
        second.append(b"z", &[1]);
        backlog.put_back(&second);
        let back = backlog.take_unsent();
        assert!(backlog.take_unsent().is_empty());
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].partial().unwrap().data, b"xy");
        let chunks: Vec<&[u8]> = back[0].chunks().collect();
        assert_eq!(chunks, [&b"z"[..], b"ef"]);
    }

    fn lost(generation: u64) -> StreamReset {
        StreamReset {
            reason: ResetReason::PeerClosed,
            generation,
            uptime: Duration::ZERO,
            written: 0,
            acked: None,
            unacked: None,
            unsent_bytes: 0,
            unread_dropped: 0,
        }
    }

    fn inbox_with(script: &[Result<&str, u64>]) -> Inbox {
        let mut inbox = Inbox::default();
        for step in script {
            match step {
                Ok(data) => {
                    inbox.buffered += data.len();
                    inbox
                        .pieces
                        .push_back(Piece::Data(data.as_bytes().to_vec(), 0));
                }
                Err(g) => {
                    inbox.unreported.push_back(lost(*g));
                    inbox.pieces.push_back(Piece::Lost(*g));
                }
            }
        }
        inbox
    }

    #[test]
    fn a_writer_report_drops_the_lost_connections_unread_bytes_only() {
        let mut inbox = inbox_with(&[Ok("old"), Ok("er"), Err(1), Ok("new"), Err(2), Ok("3")]);
        let first = inbox.report_to_writer().unwrap();
        assert_eq!((first.generation, first.unread_dropped), (1, 5));
        assert_eq!(inbox.buffered, 4);
        let second = inbox.report_to_writer().unwrap();
        assert_eq!((second.generation, second.unread_dropped), (2, 3));
        assert_eq!(inbox.buffered, 1);
        assert!(inbox.report_to_writer().is_none());
        assert_eq!(inbox.pieces.len(), 1);
    }

    #[test]
    fn each_loss_is_reported_once_to_whichever_side_asks_first() {
        let mut inbox = inbox_with(&[Err(1), Err(2)]);
        // The reader meets marker 1 first.
        inbox.pieces.pop_front();
        assert_eq!(inbox.report_to_reader(1).unwrap().generation, 1);
        // The writer is told of 2, removing its marker.
        assert_eq!(inbox.report_to_writer().unwrap().generation, 2);
        assert!(inbox.pieces.is_empty());
        assert_eq!(inbox.unreported(), 0);
        assert!(inbox.report_to_reader(2).is_none());
    }
}
