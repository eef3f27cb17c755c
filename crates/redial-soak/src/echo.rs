//! The echo server behind each proxy: writes back every byte it reads, and
//! tallies what it saw (bytes, checked frames, corrupt frames, connections,
//! data frames per soak connection) for the accounting. Its evidence does
//! not come from redial: on each TCP connection the data frames must carry
//! consecutive numbers (loss only ever cuts a connection's stream short),
//! and a soak connection's frames it received lie between what the client
//! saw echoed and what redial says it wrote.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::frame::{decode, DATA, FRAME, HELLO};

/// What every echo server saw, summed.
#[derive(Debug, Default)]
pub struct Tally {
    /// Bytes read from clients (through the proxy).
    pub bytes: AtomicU64,
    /// Whole data frames read, each checked byte for byte.
    pub data_frames: AtomicU64,
    /// Hello frames read.
    pub hellos: AtomicU64,
    /// Frames that failed the check: corruption or misframing.
    pub corrupt: AtomicU64,
    /// Connections accepted, and those still open.
    pub accepted: AtomicU64,
    pub live: AtomicU64,
    /// Data frames received per soak connection (by index).
    pub per_conn: Vec<AtomicU64>,
    /// Bytes of whole frames (hello and data) received per soak connection.
    pub per_conn_bytes: Vec<AtomicU64>,
    /// Data frames whose number did not follow the previous one on the same
    /// TCP connection, or that came on a TCP connection of another soak
    /// connection.
    pub out_of_sequence: AtomicU64,
}

impl Tally {
    /// A tally for `connections` soak connections.
    pub fn new(connections: usize) -> Tally {
        Tally {
            per_conn: (0..connections).map(|_| AtomicU64::new(0)).collect(),
            per_conn_bytes: (0..connections).map(|_| AtomicU64::new(0)).collect(),
            ..Tally::default()
        }
    }
}

pub struct EchoServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl EchoServer {
    pub async fn start(tally: Arc<Tally>) -> std::io::Result<EchoServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    // Out of descriptors or similar: pause, do not spin.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                let tally = tally.clone();
                tally.accepted.fetch_add(1, Ordering::Relaxed);
                tally.live.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(async move {
                    serve(sock, &tally).await;
                    tally.live.fetch_sub(1, Ordering::Relaxed);
                });
            }
        });
        Ok(EchoServer { addr, task })
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

async fn serve(mut sock: tokio::net::TcpStream, tally: &Tally) {
    let mut buf = vec![0u8; 16 * 1024];
    // Bytes of a frame split across reads.
    let mut carry: Vec<u8> = Vec::with_capacity(FRAME);
    // The soak connection and the number of the last data frame seen on
    // this TCP connection.
    let mut last: Option<(u32, u64)> = None;
    loop {
        let n = match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        tally.bytes.fetch_add(n as u64, Ordering::Relaxed);
        let mut data = &buf[..n];
        while !data.is_empty() {
            let take = (FRAME - carry.len()).min(data.len());
            carry.extend_from_slice(&data[..take]);
            data = &data[take..];
            if carry.len() == FRAME {
                let frame = decode(&carry);
                if let Some(n) = frame.and_then(|f| tally.per_conn_bytes.get(f.conn as usize)) {
                    n.fetch_add(FRAME as u64, Ordering::Relaxed);
                }
                match frame {
                    Some(f) if f.kind == DATA => {
                        tally.data_frames.fetch_add(1, Ordering::Relaxed);
                        if let Some(n) = tally.per_conn.get(f.conn as usize) {
                            n.fetch_add(1, Ordering::Relaxed);
                        }
                        let follows = match last {
                            None => true,
                            Some((conn, n)) => conn == f.conn && n.checked_add(1) == Some(f.n),
                        };
                        if !follows {
                            tally.out_of_sequence.fetch_add(1, Ordering::Relaxed);
                        }
                        last = Some((f.conn, f.n));
                    }
                    Some(f) if f.kind == HELLO => {
                        tally.hellos.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        tally.corrupt.fetch_add(1, Ordering::Relaxed);
                    }
                };
                carry.clear();
            }
        }
        if sock.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
