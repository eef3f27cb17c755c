//! No stampede: 5,000 connections whose server restarts come back with
//! never more connect attempts in flight than the manager's cap.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redial::{Manager, State};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Mutex;

const CONNECTIONS: usize = 5_000;
const CAP: usize = 64;

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let s = TcpSocket::new_v4()?;
    s.set_reuseaddr(true)?;
    s.bind(addr)?;
    s.listen(4096)
}

/// Accepts and holds every connection until aborted.
fn serve(l: TcpListener, held: Arc<Mutex<Vec<TcpStream>>>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            held.lock().await.push(s);
        }
    })
}

async fn wait_all(cm: &Manager, n: usize, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let up = cm
            .connections()
            .iter()
            .filter(|c| c.state() == State::Connected)
            .count();
        if up == n {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "only {up} of {n} connected after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_connections_recover_from_a_server_restart_within_the_attempt_cap() {
    let l = listen("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = l.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let server = serve(l, held.clone());

    let cm = Manager::builder().max_connecting(CAP).build();
    for _ in 0..CONNECTIONS {
        cm.connect(addr, redial::handler()).unwrap();
    }
    let first = wait_all(&cm, CONNECTIONS, Duration::from_secs(60)).await;
    let peak_first = cm.take_peak_attempts_in_flight();

    // Restart: stop listening, close every connection, listen again 1 s later.
    server.abort();
    let _ = server.await;
    held.lock().await.clear();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let l = listen(addr).unwrap();
    let restarted = Instant::now();
    let server = serve(l, held.clone());
    let back = wait_all(&cm, CONNECTIONS, Duration::from_secs(60)).await;
    let peak_restart = cm.take_peak_attempts_in_flight();
    let total_failed: u64 = cm
        .connections()
        .iter()
        .map(|c| c.stats().failed_attempts)
        .sum();
    println!(
        "{CONNECTIONS} connections: all connected in {first:?} (peak {peak_first} in flight); \
         after the restart all back in {:?} (peak {peak_restart} in flight, cap {CAP}, \
         {total_failed} failed attempts during the 1 s outage)",
        restarted.elapsed().min(back)
    );
    assert!(
        peak_first <= CAP,
        "{peak_first} attempts in flight, cap {CAP}"
    );
    assert!(
        peak_restart <= CAP,
        "{peak_restart} attempts in flight, cap {CAP}"
    );
    assert!(peak_restart > 0);
    cm.disconnect_all().await;
    server.abort();
}
