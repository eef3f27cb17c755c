//! Waits sleep until something can change their answer: a wait that polls
//! in a loop burns a core and, on a `current_thread` runtime, starves the
//! task it waits for. Each test wraps a wait in a future that counts how
//! often it is polled; a wait that spins is polled thousands of times.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use redial::{CloseReason, Manager, Options};

/// Counts the polls of the future it wraps.
struct Counted<F> {
    inner: Pin<Box<F>>,
    polls: Arc<AtomicUsize>,
}

impl<F: Future> Future for Counted<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.polls.fetch_add(1, Ordering::Relaxed);
        self.inner.as_mut().poll(cx)
    }
}

fn counted<F: Future>(f: F) -> (Counted<F>, Arc<AtomicUsize>) {
    let polls = Arc::new(AtomicUsize::new(0));
    (
        Counted {
            inner: Box::pin(f),
            polls: polls.clone(),
        },
        polls,
    )
}

/// `wait_connected` called while a disconnect flushes to a peer that does
/// not read (the state still reads Connected, the socket is gone) waits for
/// the close and reports how it ended, without spinning.
#[tokio::test(flavor = "current_thread")]
async fn wait_connected_during_a_lingering_disconnect_waits_for_the_close() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept and hold, never read: the client's queue cannot drain.
    let held = tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
        drop(s);
    });

    let cm = Manager::new();
    let grace = Duration::from_millis(600);
    let conn = cm
        .connect_with(
            addr,
            redial::handler(),
            Options::new().close_grace(grace).send_queue_limit(64 << 20),
        )
        .unwrap();
    conn.wait_connected().await.unwrap();
    // Far more than the kernel's buffers hold, so the close must linger.
    conn.send(vec![7u8; 32 << 20]).unwrap();
    let closing = conn.disconnect();

    let (wait, polls) = counted(conn.wait_connected());
    let started = std::time::Instant::now();
    let got = tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .expect("wait_connected returns once the close is done");
    let err = got.expect_err("a disconnected connection never connects again");
    assert!(
        matches!(err.reason, CloseReason::GraceExpired { .. }),
        "the close ran out of grace: {:?}",
        err.reason
    );
    assert!(
        started.elapsed() >= grace / 2,
        "returned before the close was done"
    );
    // A handful of wake-ups, not a poll per scheduler tick.
    let n = polls.load(Ordering::Relaxed);
    assert!(
        n < 50,
        "wait_connected was polled {n} times while it waited"
    );
    closing.await;
    held.abort();
}
