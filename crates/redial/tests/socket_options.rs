//! The socket options a connection's socket really carries, read back from
//! the live socket: keepalive and its idle time and interval, the user
//! timeout, and the keepalive probe count only where the kernel reads it
//! (without a user timeout: see `Options::keepalive`).

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use redial::{Keepalive, Manager, Options};

/// The kernel's probe count for sockets that do not set TCP_KEEPCNT.
fn kernel_probe_count() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/tcp_keepalive_probes")
        .expect("Linux has tcp_keepalive_probes")
        .trim()
        .parse()
        .expect("a number")
}

/// Connects once with `opts` and hands the live socket to `check`.
async fn connected_with(opts: Options, check: impl FnOnce(&socket2::SockRef<'_>)) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cm = Manager::new();
    let conn = cm.connect_with(addr, redial::handler(), opts).unwrap();
    let (_accepted, _) = listener.accept().await.unwrap();
    let sock = conn.wait_connected().await.unwrap();
    check(&sock.sock_ref());
    drop(sock);
    cm.disconnect_all().await;
}

#[tokio::test]
async fn the_defaults_set_keepalive_and_the_user_timeout_and_leave_the_probe_count() {
    connected_with(Options::new(), |s| {
        assert!(s.tcp_nodelay().unwrap());
        assert!(s.keepalive().unwrap());
        assert_eq!(s.tcp_keepalive_time().unwrap(), Keepalive::DEFAULT_IDLE);
        assert_eq!(
            s.tcp_keepalive_interval().unwrap(),
            Keepalive::DEFAULT_INTERVAL
        );
        assert_eq!(
            s.tcp_user_timeout().unwrap(),
            Some(Options::DEFAULT_USER_TIMEOUT)
        );
        // Not set: with a user timeout the kernel never reads it.
        assert_eq!(s.tcp_keepalive_retries().unwrap(), kernel_probe_count());
    })
    .await;
}

#[tokio::test]
async fn without_a_user_timeout_the_probe_count_is_set() {
    // A count the kernel's default is not, so that "set" shows.
    let retries = if kernel_probe_count() == 3 { 5 } else { 3 };
    let opts = Options::new()
        .keepalive(Some(Keepalive::new(
            Duration::from_secs(7),
            Duration::from_secs(2),
            retries,
        )))
        .user_timeout(None);
    connected_with(opts, |s| {
        assert!(s.keepalive().unwrap());
        assert_eq!(s.tcp_keepalive_time().unwrap(), Duration::from_secs(7));
        assert_eq!(s.tcp_keepalive_interval().unwrap(), Duration::from_secs(2));
        assert_eq!(s.tcp_keepalive_retries().unwrap(), retries);
        assert_eq!(s.tcp_user_timeout().unwrap(), None);
    })
    .await;
}

#[tokio::test]
async fn a_configured_user_timeout_is_set_with_keepalive_beside_it() {
    let opts = Options::new()
        .keepalive(Some(Keepalive::new(
            Duration::from_secs(9),
            Duration::from_secs(3),
            2,
        )))
        .user_timeout(Some(Duration::from_millis(1500)));
    connected_with(opts, |s| {
        assert!(s.keepalive().unwrap());
        assert_eq!(s.tcp_keepalive_time().unwrap(), Duration::from_secs(9));
        assert_eq!(s.tcp_keepalive_interval().unwrap(), Duration::from_secs(3));
        assert_eq!(
            s.tcp_user_timeout().unwrap(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(s.tcp_keepalive_retries().unwrap(), kernel_probe_count());
    })
    .await;
}

#[tokio::test]
async fn with_both_off_neither_is_set() {
    let opts = Options::new().keepalive(None).user_timeout(None);
    connected_with(opts, |s| {
        assert!(!s.keepalive().unwrap());
        assert_eq!(s.tcp_user_timeout().unwrap(), None);
    })
    .await;
}
