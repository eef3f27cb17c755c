//! Echo servers that check what they receive: every TCP connection is cut
//! into frames (a corrupt one is a violation), each frame is entered in the
//! ledger under the connection's number, the frames of one lane must come
//! in order, and everything read is echoed back. The server counts its
//! open connections, for the check that a disconnect leaves none.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::frame::Parser;
use super::ledger::Ledger;
use super::Violations;

pub struct EchoServer {
    pub addr: SocketAddr,
    open: Arc<AtomicUsize>,
    accepted: Arc<AtomicU64>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

/// Counts a connection as open for as long as it lives.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl EchoServer {
    /// Listens on loopback; `index` tells the server connections apart in
    /// the ledger (connection numbers are `index << 32 | n`).
    pub async fn start(index: u64, ledger: Arc<Ledger>, v: Violations) -> EchoServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicUsize::new(0));
        let accepted = Arc::new(AtomicU64::new(0));
        let tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (o, a, t) = (open.clone(), accepted.clone(), tasks.clone());
        let acceptor = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    continue;
                };
                o.fetch_add(1, Ordering::SeqCst);
                let guard = Open(o.clone());
                let conn = (index << 32) | a.fetch_add(1, Ordering::SeqCst);
                let (ledger, v) = (ledger.clone(), v.clone());
                let task = tokio::spawn(async move {
                    let _guard = guard;
                    let mut parser = Parser::default();
                    let mut last: HashMap<u32, u32> = HashMap::new();
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        let n = match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => n,
                        };
                        match parser.push(&buf[..n]) {
                            Ok(frames) => {
                                for (id, len) in frames {
                                    if let Some(prev) = last.insert(id.lane, id.seq) {
                                        if id.seq <= prev {
                                            v.add(format!(
                                                "server connection {conn}: {id} arrived after seq {prev} of its lane"
                                            ));
                                        }
                                    }
                                    ledger.received(id, len, conn);
                                }
                            }
                            Err(e) => {
                                v.add(format!("server connection {conn}: {e}"));
                                return;
                            }
                        }
                        if sock.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                let mut t = t.lock().unwrap();
                t.retain(|h| !h.is_finished());
                t.push(task);
            }
        });
        EchoServer {
            addr,
            open,
            accepted,
            tasks,
            acceptor,
        }
    }

    /// Connections open right now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Stops listening and ends every connection task.
    pub async fn shutdown(self) {
        self.acceptor.abort();
        let _ = self.acceptor.await;
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap());
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
    }
}
