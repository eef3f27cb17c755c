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

mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redial::{Manager, StreamError};
use redial_chaos::Proxy;
use stubborn_io::{ReconnectOptions, StubbornTcpStream};
use support::fast_options;
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
    duplicated: usize,
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
                    if f != frame(seq) {
                        seen.corrupt += 1;
                    } else if !seen.frames.insert(seq) {
                        seen.duplicated += 1;
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
    /// Frames handed back (a cut one included).
    handed_back: usize,
    /// Bytes the errors said reached the kernel of a lost connection.
    written_to_lost: u64,
    seen: Seen,
}

/// What the writer is told: frames handed back, and bytes the error (if
/// any) says reached the kernel of the connection it reports lost.
type Told<W> = fn(&W, Option<&std::io::Error>) -> (usize, u64);

async fn run<W: AsyncWrite + Unpin>(
    mut w: W,
    proxy: &Proxy,
    seen: Arc<Mutex<Seen>>,
    told: Told<W>,
) -> Outcome {
    let (mut ok, mut errors, mut handed_back, mut written_to_lost) = (0, 0, 0, 0);
    for seq in 0..FRAMES {
        if seq % 5_000 == 2_500 {
            proxy.reset_all();
        }
        match tokio::time::timeout(Duration::from_secs(10), w.write_all(&frame(seq))).await {
            Ok(Ok(())) => ok += 1,
            // The frame of a failed write was not taken.
            Ok(Err(e)) => {
                errors += 1;
                let (back, written) = told(&w, Some(&e));
                handed_back += back;
                written_to_lost += written;
            }
            Err(_) => panic!("write of frame {seq} hung"),
        }
        if seq % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    // The proxy applies a reset when a connection next moves bytes, so a
    // loss can come after the last write: flush until the server has seen
    // no new frame for a while, counting every loss a flush reports.
    let mut received = usize::MAX;
    for _ in 0..30 {
        match tokio::time::timeout(Duration::from_secs(10), w.flush()).await {
            Ok(Err(e)) => {
                errors += 1;
                let (back, written) = told(&w, Some(&e));
                handed_back += back;
                written_to_lost += written;
                continue;
            }
            Ok(Ok(())) => {}
            Err(_) => panic!("a flush hung"),
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = seen.lock().unwrap().frames.len();
        if now == received {
            break;
        }
        received = now;
    }
    handed_back += told(&w, None).0;
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    Outcome {
        ok,
        errors,
        handed_back,
        written_to_lost,
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
    let r = run(stream, &proxy, seen, |s, e| {
        let back = s
            .take_unsent()
            .iter()
            .map(|u| u.chunks().count() + usize::from(u.partial().is_some()))
            .sum();
        let written = match e.and_then(StreamError::of) {
            Some(StreamError::Reset(lost)) => lost.written,
            _ => 0,
        };
        (back, written)
    })
    .await;
    let received = r.seen.frames.len();
    let r_lost = (r.ok as usize)
        .checked_sub(received + r.handed_back)
        .expect("more frames received or handed back than were written");
    println!(
        "redial Stream: {} writes ok, {} ConnectionReset errors, {received} frames received, {} \
         handed back by take_unsent, {r_lost} lost in flight ({} bytes were written to lost \
         connections), {} cut, {} duplicated, {} corrupt",
        r.ok,
        r.errors,
        r.handed_back,
        r.written_to_lost,
        r.seen.cut,
        r.seen.duplicated,
        r.seen.corrupt
    );
    assert_eq!(r.seen.corrupt, 0);
    assert_eq!(r.seen.duplicated, 0, "a plain Stream never re-sends");
    // Every frame neither received nor handed back was written to the
    // kernel of a connection whose loss was reported.
    assert!(
        (r_lost * FRAME) as u64 <= r.written_to_lost,
        "{r_lost} frames lost, but only {} bytes were written to lost connections",
        r.written_to_lost
    );

    // stubborn-io, same schedule of resets.
    let (proxy, seen) = setup(7).await;
    let opts = ReconnectOptions::new()
        .with_exit_if_first_connect_fails(false)
        .with_retries_generator(|| std::iter::repeat_n(Duration::from_millis(5), 1000));
    let stubborn = StubbornTcpStream::connect_with_options(proxy.local_addr(), opts)
        .await
        .unwrap();
    let s = run(stubborn, &proxy, seen, |_, _| (0, 0)).await;
    let s_lost = (s.ok as usize).saturating_sub(s.seen.frames.len());
    println!(
        "stubborn-io:   {} writes ok, {} errors, {} frames received, {} lost with no error \
         ({} frames cut in two across a reconnect), {} duplicated, {} corrupt",
        s.ok,
        s.errors,
        s.seen.frames.len(),
        s_lost,
        s.seen.cut,
        s.seen.duplicated,
        s.seen.corrupt
    );
    cm.disconnect_all().await;
}
