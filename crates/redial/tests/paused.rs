//! The driver's timers on a paused clock: a loopback peer and a runtime
//! started with `start_paused`, so an idle timeout of minutes or a
//! heartbeat of seconds is tested exactly, in no real time, and every time
//! stamp the library hands out (`Event::at`, `Stats::uptime`, a following
//! pool's membership events) reads the same clock as its deadlines.
//!
//! The runtime moves its clock forward only when every task waits, and it
//! looks at the sockets first: on loopback a peer's bytes are ready by
//! then, so the clock never jumps past a read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redial::{Connection, Event, EventKind, Events, Handler, Manager, Options, ResetReason, State};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

/// A managed connection to a loopback peer, on the paused clock.
struct Paused {
    cm: Manager,
    conn: Connection,
    events: Events,
    /// The server's side of the connection.
    peer: TcpStream,
    listener: TcpListener,
}

impl Paused {
    /// Connects with `handler` and `opts` (a long connect timeout, so the
    /// paused clock cannot outrun an attempt) and waits until it is up.
    async fn start<H: Handler>(handler: H, opts: Options) -> Paused {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let cm = Manager::new();
        let events = cm.events();
        let opts = opts.connect_timeout(Duration::from_secs(3600));
        let conn = cm
            .connect_with(listener.local_addr().unwrap(), handler, opts)
            .unwrap();
        let (peer, _) = listener.accept().await.unwrap();
        conn.wait_connected().await.unwrap();
        Paused {
            cm,
            conn,
            events,
            peer,
            listener,
        }
    }

    /// The next event of `kind`'s variant, skipping others.
    async fn next(&mut self, want: fn(&EventKind) -> bool) -> Event {
        loop {
            let e = self.events.recv().await.expect("events flow");
            if want(&e.kind) {
                return e;
            }
        }
    }

    async fn stop(self) {
        self.cm.disconnect_all().await;
        drop(self.listener);
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_peer_is_reset_exactly_at_the_idle_timeout() {
    let idle = Duration::from_secs(300);
    let mut p = Paused::start(redial::handler(), Options::new().idle_timeout(Some(idle))).await;
    let up = p.next(|k| matches!(k, EventKind::Connected { .. })).await;
    let reset = p.next(|k| matches!(k, EventKind::Reset { .. })).await;
    let EventKind::Reset { reason, uptime, .. } = reset.kind else {
        unreachable!()
    };
    assert_eq!(reason, ResetReason::IdleTimeout);
    let after = reset.at.duration_since(up.at);
    assert!(
        after >= idle && after < idle + Duration::from_secs(1),
        "reset {after:?} after the connect, idle timeout {idle:?}"
    );
    assert!(
        uptime >= idle && uptime < idle + Duration::from_secs(1),
        "{uptime:?}"
    );
    p.stop().await;
}

#[tokio::test(start_paused = true)]
async fn reads_push_the_idle_timeout_out() {
    let idle = Duration::from_secs(60);
    let mut p = Paused::start(
        redial::handler().on_data(|_, _| {}),
        Options::new().idle_timeout(Some(idle)),
    )
    .await;
    let started = Instant::now();
    // A byte every 40 s for four minutes: never 60 s of silence.
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_secs(40)).await;
        tokio::io::AsyncWriteExt::write_all(&mut p.peer, b"x")
            .await
            .unwrap();
    }
    assert!(started.elapsed() >= Duration::from_secs(240));
    assert_eq!(p.conn.state(), State::Connected);
    assert_eq!(p.conn.stats().resets, 0);
    // Then silence: reset one idle timeout after the last byte.
    let last = Instant::now();
    let reset = p.next(|k| matches!(k, EventKind::Reset { .. })).await;
    let silent = Instant::from_std(reset.at).duration_since(last);
    assert!(
        silent >= idle && silent < idle + Duration::from_secs(1),
        "{silent:?}"
    );
    p.stop().await;
}

#[tokio::test(start_paused = true)]
async fn the_heartbeat_calls_on_idle_once_per_quiet_period() {
    let beat = Duration::from_secs(30);
    let beats = Arc::new(AtomicUsize::new(0));
    let b = beats.clone();
    let h = redial::handler().on_data(|_, _| {}).on_idle(move |sock| {
        b.fetch_add(1, Ordering::SeqCst);
        let _ = sock.send("PING\n");
    });
    let mut p = Paused::start(h, Options::new().heartbeat(Some(beat))).await;
    let started = Instant::now();
    let mut buf = [0u8; 15];
    p.peer.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"PING\nPING\nPING\n");
    let took = started.elapsed();
    assert!(
        took >= 3 * beat && took < 3 * beat + Duration::from_secs(1),
        "three beats took {took:?}"
    );
    assert_eq!(beats.load(Ordering::SeqCst), 3);
    assert_eq!(p.conn.state(), State::Connected, "a heartbeat is no reset");
    p.stop().await;
}

#[tokio::test(start_paused = true)]
async fn uptime_and_event_times_read_the_runtimes_clock() {
    let mut p = Paused::start(redial::handler(), Options::new()).await;
    let up = p.next(|k| matches!(k, EventKind::Connected { .. })).await;
    let hour = Duration::from_secs(3600);
    tokio::time::sleep(hour).await;
    let uptime = p.conn.stats().uptime.expect("connected");
    assert!(
        uptime >= hour && uptime < hour + Duration::from_secs(1),
        "uptime {uptime:?} after an hour of paused time"
    );
    // The peer closes: the loss is stamped an hour after the connect.
    drop(p.peer);
    p.peer = p.listener.accept().await.unwrap().0;
    let _ = &p.peer;
    let reset = p.next(|k| matches!(k, EventKind::Reset { .. })).await;
    let EventKind::Reset { uptime, .. } = reset.kind else {
        unreachable!()
    };
    assert!(uptime >= hour, "{uptime:?}");
    assert!(reset.at.duration_since(up.at) >= hour);
    p.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_following_pools_events_read_the_runtimes_clock_too() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let answer = Arc::new(std::sync::Mutex::new(Vec::new()));
    let a = answer.clone();
    let resolver = redial::Resolver::from_fn(move |_host, _port| {
        let addrs = a.lock().unwrap().clone();
        async move { Ok(addrs) }
    });
    let cm = Manager::new();
    let mut events = cm.events();
    let follow = redial::Follow::new("cache.test:11211")
        .every(Duration::from_secs(60))
        .resolver(resolver);
    let pool = cm
        .create_pool_following("fleet", follow, |_| redial::handler())
        .unwrap();
    let start = Instant::now();
    let hour = Duration::from_secs(3600);
    tokio::time::sleep(hour).await;
    // The name gains an address an hour in: the member is added then,
    // on the paused clock, not a moment after the start on the system's.
    answer.lock().unwrap().push(addr);
    let added = loop {
        let e = events.recv().await.expect("events flow");
        if matches!(e.kind, EventKind::MemberAdded { .. }) {
            break e;
        }
    };
    let at = Instant::from_std(added.at);
    assert!(
        at.duration_since(start) >= hour,
        "member added {:?} after the start",
        at.duration_since(start)
    );
    pool.disconnect().await;
}
