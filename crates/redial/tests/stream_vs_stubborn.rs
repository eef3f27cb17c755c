//! Why `Stream` reports resets: the same framed writes, through the same
//! proxy injecting the same seeded resets, with redial's `Stream` and with
//! `stubborn-io` (a stream wrapper that reconnects without saying so).
//!
//! Frames written into a connection that then dies are lost either way (they
//! sat in kernel or proxy buffers). redial says so: a `ConnectionReset`
//! error per loss and `take_unsent` for what never left. stubborn-io keeps
//! returning `Ok`, so its losses are silent, and a frame cut by a reset
//! arrives split (its head on one connection, nothing of the rest). The test
//! prints both sides' counts and asserts that redial never loses a frame
//! without having reported a reset.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use harness::fast_options;
use redial::Manager;
use redial_chaos::Proxy;
use stubborn_io::{ReconnectOptions, StubbornTcpStream};
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

const FRAMES: u32 = 30_000;
const FRAME: usize = 32;

fn frame(seq: u32) -> [u8; FRAME] {
    let mut f = [0u8; FRAME];
    f[..4].copy_from_slice(&seq.to_be_bytes());
    for (i, b) in f[4..].iter_mut().enumerate() {
        *b = (seq as u8).wrapping_add(i as u8);
    }
    f
}

#[derive(Default)]
struct Seen {
    frames: HashSet<u32>,
    corrupt: usize,
    cut: usize,
}

/// Collects whole, intact frames per connection; a trailing piece is a cut frame.
async fn server(l: TcpListener, seen: Arc<Mutex<Seen>>) {
    while let Ok((mut s, _)) = l.accept().await {
        let seen = seen.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            loop {
                match s.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
                let whole = buf.len() / FRAME * FRAME;
                let mut seen = seen.lock().unwrap();
                for f in buf[..whole].chunks(FRAME) {
                    let seq = u32::from_be_bytes([f[0], f[1], f[2], f[3]]);
                    if f == frame(seq) {
                        seen.frames.insert(seq);
                    } else {
                        seen.corrupt += 1;
                    }
                }
                drop(seen);
                buf.drain(..whole);
            }
            if !buf.is_empty() {
                seen.lock().unwrap().cut += 1;
            }
        });
    }
}

struct Outcome {
    ok: u32,
    errors: u32,
    handed_back: usize,
    seen: Seen,
}

async fn run<W: AsyncWrite + Unpin>(
    mut w: W,
    proxy: &Proxy,
    seen: Arc<Mutex<Seen>>,
    mut unsent: impl FnMut(&W) -> usize,
) -> Outcome {
    let (mut ok, mut errors, mut handed_back) = (0, 0, 0);
    for seq in 0..FRAMES {
        if seq % 5_000 == 2_500 {
            proxy.reset_all();
        }
        match tokio::time::timeout(Duration::from_secs(10), w.write_all(&frame(seq))).await {
            Ok(Ok(())) => ok += 1,
            Ok(Err(_)) => {
                errors += 1;
                handed_back += unsent(&w);
            }
            Err(_) => panic!("write of frame {seq} hung"),
        }
        if seq % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(10), w.flush()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    Outcome {
        ok,
        errors,
        handed_back,
        seen,
    }
}

async fn setup(seed: u64) -> (Proxy, Arc<Mutex<Seen>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Seen::default()));
    tokio::spawn(server(l, seen.clone()));
    let proxy = Proxy::builder()
        .seed(seed)
        .start("127.0.0.1:0", addr)
        .await
        .unwrap();
    (proxy, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redial_reports_every_loss_that_stubborn_io_hides() {
    // redial Stream.
    let (proxy, seen) = setup(7).await;
    let cm = Manager::new();
    let stream = cm.stream(proxy.local_addr(), fast_options(5, 50)).unwrap();
    let r = run(stream, &proxy, seen, |s| {
        s.take_unsent().iter().map(|u| u.chunks().count()).sum()
    })
    .await;
    let r_lost = FRAMES as usize - r.seen.frames.len() - r.handed_back;
    println!(
        "redial Stream: {} writes ok, {} ConnectionReset errors, {} frames received, {} handed back \
         by take_unsent, {} lost in flight (each after a reported reset), {} cut, {} corrupt",
        r.ok, r.errors, r.seen.frames.len(), r.handed_back, r_lost, r.seen.cut, r.seen.corrupt
    );
    assert_eq!(r.seen.corrupt, 0);
    if r_lost > 0 || r.seen.cut > 0 {
        assert!(r.errors > 0, "frames lost without any reported reset");
    }

    // stubborn-io, same schedule of resets.
    let (proxy, seen) = setup(7).await;
    let opts = ReconnectOptions::new()
        .with_exit_if_first_connect_fails(false)
        .with_retries_generator(|| std::iter::repeat_n(Duration::from_millis(5), 1000));
    let stubborn = StubbornTcpStream::connect_with_options(proxy.local_addr(), opts)
        .await
        .unwrap();
    let s = run(stubborn, &proxy, seen, |_| 0).await;
    let s_lost = FRAMES as usize - s.seen.frames.len();
    println!(
        "stubborn-io:   {} writes ok, {} errors, {} frames received, {} lost with no error \
         ({} frames cut in two across a reconnect), {} corrupt",
        s.ok,
        s.errors,
        s.seen.frames.len(),
        s_lost,
        s.seen.cut,
        s.seen.corrupt
    );
    cm.disconnect_all().await;
}
