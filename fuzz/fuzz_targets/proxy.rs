//! The fault proxy fed arbitrary bytes and faults never panics, never
//! corrupts or reorders a stream, delivers everything once healed when no
//! fault ended the connection, and closes every proxied connection once
//! both peers are gone.
//!
//! One proxy in front of one echo server lives for the whole fuzzing run
//! (on a current-thread runtime); each input is a script of operations on
//! a fresh client connection: write bytes, read, apply a fault (parameters
//! kept to milliseconds so an input runs in milliseconds), heal, half-close,
//! reconnect. Afterwards the proxy is healed and must have no live
//! connection left.

#![no_main]

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use redial_chaos::{Direction, Fault, Proxy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;

/// Long enough that only a real hang or loss trips it, even on a busy
/// machine; an input normally needs a few milliseconds.
const PATIENCE: Duration = Duration::from_secs(5);

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

/// Echoes every connection until the client closes its side.
async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind echo");
    let addr = listener.local_addr().expect("echo addr");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

fn proxy() -> &'static Proxy {
    static PROXY: OnceLock<Proxy> = OnceLock::new();
    PROXY.get_or_init(|| {
        runtime().block_on(async {
            let upstream = echo_server().await;
            Proxy::builder()
                .seed(7)
                .connect_timeout(Duration::from_secs(2))
                .start("127.0.0.1:0", upstream)
                .await
                .expect("proxy starts")
        })
    })
}

#[path = "../common/bytes.rs"]
mod bytes;
use bytes::Bytes;

fn direction(b: u8) -> Direction {
    match b % 3 {
        0 => Direction::Upstream,
        1 => Direction::Downstream,
        _ => Direction::Both,
    }
}

fn us(n: u8) -> Duration {
    Duration::from_micros(u64::from(n) * 16)
}

/// A fault from two bytes, with times of at most ~4 ms.
fn fault(kind: u8, arg: u8) -> Fault {
    match kind % 9 {
        0 => Fault::ResetAll,
        1 => Fault::CloseAll,
        2 => Fault::Refuse,
        3 => Fault::Blackhole,
        4 => Fault::Latency {
            direction: direction(arg),
            delay: us(arg),
            jitter: us(arg / 2),
        },
        5 => Fault::Bandwidth {
            direction: direction(arg),
            bytes_per_s: 64 * 1024 + u64::from(arg) * 1024,
        },
        6 => Fault::Slice {
            direction: direction(arg),
            max_chunk: usize::from(arg % 17),
            delay: us(arg % 16),
        },
        7 => Fault::CutAfter {
            bytes: u64::from(arg) * 8,
        },
        _ => Fault::SlowClose { delay: us(arg) },
    }
}

/// One client connection and what went through it.
struct Client {
    stream: Option<TcpStream>,
    sent: Vec<u8>,
    received: Vec<u8>,
    /// No fault has ended or may end it: everything sent must come back.
    intact: bool,
    write_closed: bool,
}

impl Client {
    async fn connect(proxy: &Proxy, intact: bool) -> Client {
        let accepted = proxy.stats().accepted;
        let mut stream = tokio::time::timeout(PATIENCE, TcpStream::connect(proxy.local_addr()))
            .await
            .ok()
            .and_then(Result::ok);
        // Wait until the proxy has accepted it: a connection still in the
        // kernel's backlog is reset when `refuse` closes the listener, which
        // is TCP, not the proxy.
        if stream.is_some() && proxy.wait_accepted(accepted + 1, PATIENCE).await.is_err() {
            stream = None;
        }
        Client {
            intact: intact && stream.is_some(),
            stream,
            sent: Vec::new(),
            received: Vec::new(),
            write_closed: false,
        }
    }

    /// Reads what is there within `wait`; the echo must be a prefix of what
    /// was sent, whatever the faults did.
    async fn read(&mut self, wait: Duration) -> bool {
        let Some(s) = self.stream.as_mut() else {
            return false;
        };
        let mut buf = [0u8; 4096];
        let got = match tokio::time::timeout(wait, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                self.stream = None;
                return false;
            }
            Ok(Ok(n)) => n,
            Err(_) => return false,
        };
        self.received.extend_from_slice(&buf[..got]);
        assert!(
            self.sent.starts_with(&self.received),
            "the echo is not a prefix of what was sent: sent {} bytes, got {} bytes",
            self.sent.len(),
            self.received.len()
        );
        true
    }
}

fuzz_target!(|data: &[u8]| {
    let proxy = proxy();
    runtime().block_on(async {
        proxy.heal().expect("heal");
        let mut c = Client::connect(proxy, true).await;
        let mut b = Bytes(data);
        // Faults that end connections are remembered until the next heal:
        // a connection made meanwhile is not expected to survive either.
        let mut destructive = false;
        let mut ops = 0;
        while !b.0.is_empty() && ops < 64 {
            ops += 1;
            match b.u8() % 8 {
                0 | 1 => {
                    let n = usize::from(b.u8() % 128);
                    let chunk = b.take(n).to_vec();
                    if c.write_closed {
                        continue;
                    }
                    if let Some(s) = c.stream.as_mut() {
                        // A few hundred bytes always fit the kernel buffers,
                        // even while the proxy holds everything back.
                        match tokio::time::timeout(PATIENCE, s.write_all(&chunk)).await {
                            Ok(Ok(())) => c.sent.extend_from_slice(&chunk),
                            _ => {
                                c.intact = false;
                                c.stream = None;
                            }
                        }
                    }
                }
                2 => {
                    c.read(Duration::from_millis(2)).await;
                }
                3 | 4 => {
                    let f = fault(b.u8(), b.u8());
                    if matches!(
                        f,
                        Fault::ResetAll | Fault::CloseAll | Fault::CutAfter { .. }
                    ) {
                        destructive = matches!(f, Fault::CutAfter { .. }) || destructive;
                        c.intact = false;
                    }
                    proxy.apply(f).expect("apply");
                }
                5 => {
                    proxy.heal().expect("heal");
                    destructive = false;
                }
                6 => {
                    if let Some(s) = c.stream.as_mut() {
                        let _ = s.shutdown().await;
                        c.write_closed = true;
                    }
                }
                _ => {
                    c = Client::connect(proxy, !destructive).await;
                }
            }
        }

        // Healed, an intact connection gets everything back.
        proxy.heal().expect("heal");
        if c.intact {
            let deadline = tokio::time::Instant::now() + PATIENCE;
            while c.received.len() < c.sent.len()
                && c.stream.is_some()
                && tokio::time::Instant::now() < deadline
            {
                c.read(Duration::from_millis(50)).await;
            }
            assert_eq!(
                c.received.len(),
                c.sent.len(),
                "bytes lost on a connection no fault ended"
            );
        }
        drop(c);

        // Both peers gone: the proxy must let go of every connection.
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while proxy.stats().live > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the proxy still holds {} connections after both peers closed",
                proxy.stats().live
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
});
