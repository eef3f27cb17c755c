//! The manager-wide cap on connect attempts in flight, so that thousands of
//! connections coming back at once do not knock a recovering server over.
//!
//! A waiting attempt is a ticket in the gate's queue, not a node in the
//! waiting future: the future is 24 bytes, small enough to sit inline in
//! every connection's task (a semaphore's waiter, with its waker and list
//! links, did not fit there and had to be boxed, an allocation per waiter).
//! A place that frees goes to the oldest ticket, which the releaser wakes.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// Counts and caps connect attempts in flight.
pub(crate) struct AttemptGate {
    places: Mutex<Places>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

/// The free places and the tickets waiting for one, oldest first (tickets
/// grow, so the queue is sorted by them).
struct Places {
    free: usize,
    waiting: VecDeque<(u64, Waker)>,
    next_ticket: u64,
}

/// One attempt in flight; leaving drops it from the count and passes its
/// place on.
pub(crate) struct Attempt<'a> {
    gate: &'a AttemptGate,
}

/// Waits for a place: [`AttemptGate::enter`].
pub(crate) struct Enter<'a> {
    gate: &'a AttemptGate,
    /// Set while queued; taken when the place is handed over.
    ticket: Option<u64>,
}

impl AttemptGate {
    pub(crate) fn new(cap: usize) -> Self {
        AttemptGate {
            places: Mutex::new(Places {
                free: cap.max(1),
                waiting: VecDeque::new(),
                next_ticket: 0,
            }),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        }
    }

    fn places(&self) -> MutexGuard<'_, Places> {
        self.places.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for a free place (after every attempt queued before it), then
    /// counts the attempt in.
    pub(crate) fn enter(&self) -> Enter<'_> {
        Enter {
            gate: self,
            ticket: None,
        }
    }

    fn count_in(&self) -> Attempt<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        self.peak.fetch_max(now, Ordering::AcqRel);
        #[cfg(feature = "metrics")]
        crate::metrics::attempt_in_flight(true);
        Attempt { gate: self }
    }

    /// Hands a place that is no longer used to the oldest waiting ticket,
    /// or frees it.
    fn pass_on(&self) {
        let mut p = self.places();
        match p.waiting.pop_front() {
            Some((_, waker)) => {
                drop(p);
                waker.wake();
            }
            None => p.free += 1,
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    pub(crate) fn reset_peak(&self) -> usize {
        self.peak.swap(self.in_flight(), Ordering::AcqRel)
    }
}

impl<'a> Future for Enter<'a> {
    type Output = Attempt<'a>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Attempt<'a>> {
        let gate = self.gate;
        let mut p = gate.places();
        match self.ticket {
            None if p.free > 0 && p.waiting.is_empty() => {
                p.free -= 1;
                drop(p);
                Poll::Ready(gate.count_in())
            }
            None => {
                let ticket = p.next_ticket;
                p.next_ticket += 1;
                p.waiting.push_back((ticket, cx.waker().clone()));
                self.ticket = Some(ticket);
                Poll::Pending
            }
            Some(ticket) if p.handed(ticket) => {
                drop(p);
                self.ticket = None;
                Poll::Ready(gate.count_in())
            }
            // Polled again while queued (a wake-up for something else).
            Some(ticket) => {
                if let Ok(i) = p.waiting.binary_search_by_key(&ticket, |(t, _)| *t) {
                    if let Some((_, w)) = p.waiting.get_mut(i) {
                        w.clone_from(cx.waker());
                    }
                }
                Poll::Pending
            }
        }
    }
}

impl Places {
    /// Whether a releaser handed a place to the queued `ticket`. Places go
    /// to the oldest ticket, and a ticket leaves the queue otherwise only
    /// when its waiter is dropped: so a live ticket is out of the queue
    /// exactly when it is older than the oldest one still in it.
    fn handed(&self, ticket: u64) -> bool {
        self.waiting
            .front()
            .is_none_or(|(oldest, _)| ticket < *oldest)
    }
}

impl Drop for Enter<'_> {
    /// Given up while queued: leaves the queue, or passes on the place it
    /// was handed and never took.
    fn drop(&mut self) {
        let Some(ticket) = self.ticket else {
            return;
        };
        let mut p = self.gate.places();
        if p.handed(ticket) {
            drop(p);
            self.gate.pass_on();
        } else if let Ok(i) = p.waiting.binary_search_by_key(&ticket, |(t, _)| *t) {
            p.waiting.remove(i);
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        self.gate.in_flight.fetch_sub(1, Ordering::AcqRel);
        #[cfg(feature = "metrics")]
        crate::metrics::attempt_in_flight(false);
        self.gate.pass_on();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn noop_cx() -> Context<'static> {
        Context::from_waker(Waker::noop())
    }

    #[test]
    fn places_go_to_the_oldest_waiter_and_never_exceed_the_cap() {
        let gate = AttemptGate::new(2);
        let mut cx = noop_cx();
        let a = gate.enter();
        let b = gate.enter();
        let (mut c, mut d) = (Box::pin(gate.enter()), Box::pin(gate.enter()));
        let Poll::Ready(a) = Pin::new(&mut Box::pin(a)).poll(&mut cx) else {
            panic!("a free place")
        };
        let Poll::Ready(b) = Pin::new(&mut Box::pin(b)).poll(&mut cx) else {
            panic!("a free place")
        };
        assert!(c.as_mut().poll(&mut cx).is_pending());
        assert!(d.as_mut().poll(&mut cx).is_pending());
        assert_eq!(gate.in_flight(), 2);
        // A newcomer queues behind the waiters even once a place frees.
        drop(a);
        let mut e = Box::pin(gate.enter());
        assert!(e.as_mut().poll(&mut cx).is_pending());
        assert!(d.as_mut().poll(&mut cx).is_pending(), "c was first");
        let Poll::Ready(c) = c.as_mut().poll(&mut cx) else {
            panic!("the freed place went to c")
        };
        assert_eq!(gate.in_flight(), 2);
        drop((b, c));
        assert!(d.as_mut().poll(&mut cx).is_ready());
        assert!(e.as_mut().poll(&mut cx).is_ready());
        assert_eq!(gate.reset_peak(), 2);
    }

    #[test]
    fn a_waiter_given_up_loses_no_place() {
        let gate = AttemptGate::new(1);
        let mut cx = noop_cx();
        let Poll::Ready(a) = Box::pin(gate.enter()).as_mut().poll(&mut cx) else {
            panic!("a free place")
        };
        let mut b = Box::pin(gate.enter());
        let mut c = Box::pin(gate.enter());
        assert!(b.as_mut().poll(&mut cx).is_pending());
        assert!(c.as_mut().poll(&mut cx).is_pending());
        // b is handed a's place, then dropped before it takes it: the
        // place goes on to c.
        drop(a);
        drop(b);
        let Poll::Ready(c) = c.as_mut().poll(&mut cx) else {
            panic!("the place b never took went on to c")
        };
        // A waiter dropped while still queued just leaves the queue.
        let mut d = Box::pin(gate.enter());
        assert!(d.as_mut().poll(&mut cx).is_pending());
        drop(d);
        assert_eq!(gate.places().waiting.len(), 0);
        drop(c);
        assert_eq!(gate.places().free, 1);
        assert_eq!(gate.in_flight(), 0);
    }

    #[tokio::test]
    async fn many_tasks_never_hold_more_places_than_the_cap() {
        let gate = Arc::new(AttemptGate::new(3));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let gate = gate.clone();
            tasks.push(tokio::spawn(async move {
                let _place = gate.enter().await;
                assert!(gate.in_flight() <= 3);
                tokio::task::yield_now().await;
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(gate.in_flight(), 0);
        assert_eq!(gate.reset_peak(), 3);
        assert_eq!(gate.places().free, 3);
    }
}
