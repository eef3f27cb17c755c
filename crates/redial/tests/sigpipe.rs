//! A library must not depend on its host ignoring SIGPIPE: Rust's `main`
//! ignores it, a C host or a binary built with another `sigpipe` setting
//! does not, and there a write to a socket whose peer has gone kills the
//! whole process. The parent test runs the child test in a process of its
//! own, which puts SIGPIPE back to its default action (death) before it
//! writes through redial to a Unix peer that stopped reading.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

use redial::{Manager, Options, ResetReason, Resume};

const CHILD_ENV: &str = "REDIAL_SIGPIPE_CHILD";

#[test]
fn a_write_to_a_unix_peer_that_is_gone_resets_instead_of_raising_sigpipe() {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "sigpipe_child", "--ignored", "--nocapture"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.signal(),
        Some(libc::SIGPIPE),
        "the process died of SIGPIPE:\n{stdout}\n{stderr}"
    );
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "child did not run:\n{stdout}");
}

/// Runs in the process its parent starts, with SIGPIPE at its default.
#[test]
#[ignore = "run in a process of its own by a_write_to_a_unix_peer_that_is_gone_resets_instead_of_raising_sigpipe"]
fn sigpipe_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        eprintln!("sigpipe_child only runs in the process its parent test starts");
        return;
    }
    default_sigpipe();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(write_to_a_peer_that_stopped_reading());
}

/// What a host that does not ignore SIGPIPE looks like.
#[allow(unsafe_code)]
fn default_sigpipe() {
    // SAFETY: `signal` with a constant disposition, before any other
    // thread of this test has started.
    let old = unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    assert_ne!(old, libc::SIG_ERR);
}

async fn write_to_a_peer_that_stopped_reading() {
    let path = std::env::temp_dir().join(format!("redial-sigpipe-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let handler = redial::handler().on_reset(move |r| {
        let _ = tx.send(r.reason().clone());
        Resume::Stop
    });
    let cm = Manager::new();
    let endpoint = format!("unix:{}", path.display());
    let conn = cm
        .connect_with(endpoint.as_str(), handler, Options::new().max_attempts(1))
        .unwrap();
    let (peer, _) = listener.accept().await.unwrap();
    conn.wait_connected().await.unwrap();
    // The peer stops reading but does not close: redial sees nothing
    // until it writes, and that write (one message: the plain write, not
    // the vectored one) meets EPIPE, which raises SIGPIPE unless the
    // write says not to.
    let peer = peer.into_std().unwrap();
    peer.shutdown(std::net::Shutdown::Read).unwrap();
    conn.send(b"after the peer stopped reading").unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a reset within 20 s")
        .unwrap();
    assert_eq!(reason, ResetReason::PeerClosed);
    drop(peer);
    let _ = std::fs::remove_file(&path);
    println!("survived the write with a reset: {reason:?}");
}
