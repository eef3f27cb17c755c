//! A loopback server that can be taken down and brought back on the same
//! address, for the fleet tests (`keyed`, `reconnect_now`, `follow`).
//! Down: the listener is closed and every accepted connection dropped, so
//! clients see their connection end and their reconnects refused.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A server that reads and discards, counting the bytes and connections.
pub struct Downable {
    pub addr: SocketAddr,
    task: Option<JoinHandle<()>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    pub accepted: Arc<AtomicU64>,
    pub received: Arc<AtomicU64>,
}

impl Downable {
    /// Listens on a free port of `ip`.
    pub async fn start(ip: &str) -> Downable {
        Self::start_at(format!("{ip}:0").parse().expect("an IP address")).await
    }

    /// Listens on `addr`.
    pub async fn start_at(addr: SocketAddr) -> Downable {
        let listener = TcpListener::bind(addr).await.expect("bind");
        let mut s = Downable {
            addr: listener.local_addr().expect("local addr"),
            task: None,
            conns: Arc::default(),
            accepted: Arc::default(),
            received: Arc::default(),
        };
        s.serve(listener);
        s
    }

    fn serve(&mut self, listener: TcpListener) {
        let (conns, accepted, received) = (
            self.conns.clone(),
            self.accepted.clone(),
            self.received.clone(),
        );
        self.task = Some(tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                accepted.fetch_add(1, Ordering::SeqCst);
                let received = received.clone();
                conns.lock().unwrap().push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 16 * 1024];
                    while let Ok(n @ 1..) = s.read(&mut buf).await {
                        received.fetch_add(n as u64, Ordering::SeqCst);
                    }
                }));
            }
        }));
    }

    /// Closes the listener and every connection.
    pub fn down(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    /// Listens again on the same address (waits until the listener is
    /// really gone: an aborted task drops it at its next poll).
    pub async fn up(&mut self) {
        let t0 = std::time::Instant::now();
        loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => return self.serve(l),
                Err(e) if t0.elapsed() < std::time::Duration::from_secs(10) => {
                    let _ = e;
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
                Err(e) => panic!("cannot listen again on {}: {e}", self.addr),
            }
        }
    }
}

impl Drop for Downable {
    fn drop(&mut self) {
        self.down();
    }
}
