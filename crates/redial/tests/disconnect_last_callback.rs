//! Once an awaited disconnect has returned, no callback of the connections
//! it covers runs again: `on_close` was the last. What an application that
//! tears down its own state right after `disconnect().await` relies on.
//! Each handler records every callback with whether the awaited disconnect
//! had returned, and says when it is dropped (its connection's task has
//! ended: nothing can call it any more), which is what the checks wait for.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redial::{Close, Handler, Manager, Reset, Resume, Retry, Socket};
use support::fast_options;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// Callbacks made after the awaited disconnect returned, by name.
#[derive(Clone, Default)]
struct Log {
    returned: Arc<AtomicBool>,
    late: Arc<Mutex<Vec<&'static str>>>,
    closes: Arc<Mutex<u32>>,
}

impl Log {
    fn note(&self, name: &'static str) {
        if self.returned.load(Ordering::SeqCst) {
            self.late.lock().unwrap().push(name);
        }
    }
}

struct Recording {
    log: Log,
    dropped: mpsc::UnboundedSender<()>,
}

impl Handler for Recording {
    fn on_connect(&mut self, _: &Socket) {
        self.log.note("on_connect");
    }
    fn on_data(&mut self, _: &Socket, _: &[u8]) {
        self.log.note("on_data");
    }
    fn on_reset(&mut self, _: &Reset) -> Resume {
        self.log.note("on_reset");
        Resume::Reconnect
    }
    fn on_connect_failed(&mut self, _: &io::Error, _: u32) -> Retry {
        self.log.note("on_connect_failed");
        Retry::OnSchedule
    }
    fn on_idle(&mut self, _: &Socket) {
        self.log.note("on_idle");
    }
    fn on_close(&mut self, _: &Close) {
        self.log.note("on_close");
        *self.log.closes.lock().unwrap() += 1;
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        let _ = self.dropped.send(());
    }
}

/// A server whose every connection is sent data without pause until it
/// goes: the connection's task is busy with `on_data` when the disconnect
/// comes.
async fn chatty_server() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move { while s.write_all(&[1u8; 4096]).await.is_ok() {} });
        }
    });
    addr
}

/// Waits until `n` handlers were dropped, then checks that no callback
/// ran after the disconnect returned and that each closed once.
async fn check(log: &Log, dropped: &mut mpsc::UnboundedReceiver<()>, n: u32) {
    for _ in 0..n {
        tokio::time::timeout(Duration::from_secs(30), dropped.recv())
            .await
            .expect("the connection's task ended within 30 s");
    }
    assert_eq!(*log.late.lock().unwrap(), Vec::<&str>::new());
    assert_eq!(*log.closes.lock().unwrap(), n);
}

fn handler(log: &Log, dropped: &mpsc::UnboundedSender<()>) -> Recording {
    Recording {
        log: log.clone(),
        dropped: dropped.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_callback_runs_after_an_awaited_disconnect_returns() {
    let addr = chatty_server().await;
    for round in 0..20 {
        let (log, (tx, mut rx)) = (Log::default(), mpsc::unbounded_channel());
        let cm = Manager::new();
        let opts = fast_options(1, 5).heartbeat(Some(Duration::from_millis(1)));
        let conn = cm.connect_with(addr, handler(&log, &tx), opts).unwrap();
        conn.wait_connected().await.unwrap();
        if round % 2 == 0 {
            conn.disconnect().await;
        } else {
            conn.abort().await;
        }
        log.returned.store(true, Ordering::SeqCst);
        check(&log, &mut rx, 1).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_callback_runs_after_an_awaited_disconnect_of_a_connection_backing_off() {
    let port = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (log, (tx, mut rx)) = (Log::default(), mpsc::unbounded_channel());
    let cm = Manager::new();
    let conn = cm
        .connect_with(port, handler(&log, &tx), fast_options(1, 2))
        .unwrap();
    support::wait_until("a failed attempt", Duration::from_secs(20), || {
        conn.stats().failed_attempts > 3
    })
    .await;
    conn.disconnect().await;
    log.returned.store(true, Ordering::SeqCst);
    check(&log, &mut rx, 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_callback_runs_after_a_pool_or_the_manager_has_disconnected() {
    let addr = chatty_server().await;
    let (log, (tx, mut rx)) = (Log::default(), mpsc::unbounded_channel());
    let cm = Manager::new();
    let pool = cm.create_pool("last-callback").unwrap();
    let mut members = Vec::new();
    for _ in 0..4 {
        members.push(pool.add_connection(addr, handler(&log, &tx)).unwrap());
    }
    for m in &members {
        m.wait_connected().await.unwrap();
    }
    pool.disconnect().await;
    log.returned.store(true, Ordering::SeqCst);
    check(&log, &mut rx, 4).await;

    let (log, (tx, mut rx)) = (Log::default(), mpsc::unbounded_channel());
    let pool = cm.create_pool("last-callback-2").unwrap();
    for _ in 0..3 {
        let c = pool.add_connection(addr, handler(&log, &tx)).unwrap();
        c.wait_connected().await.unwrap();
    }
    let own = cm.connect(addr, handler(&log, &tx)).unwrap();
    own.wait_connected().await.unwrap();
    cm.disconnect_all().await;
    log.returned.store(true, Ordering::SeqCst);
    check(&log, &mut rx, 4).await;
}
