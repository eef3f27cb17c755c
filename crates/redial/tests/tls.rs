//! TLS (feature `tls`) against a server whose CA and certificate the test
//! makes: success, wrong host name refused, untrusted CA refused, no
//! plaintext fallback, and reconnect after the server restarts.

#![cfg(feature = "tls")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use redial::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use redial::tls::rustls::{self, RootCertStore};
use redial::{Connection, Manager, State, TlsConfig};
use support::{fast_options, Recorder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

struct Pki {
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// A CA and a server certificate for `localhost` signed by it.
fn pki() -> Pki {
    pki_named("redial test CA")
}

fn pki_named(ca_name: &str) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    Pki {
        ca: ca.der().clone(),
        chain: vec![cert.der().clone()],
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

fn roots(ca: &CertificateDer<'static>) -> RootCertStore {
    let mut r = RootCertStore::empty();
    r.add(ca.clone()).unwrap();
    r
}

/// A TLS echo server on `addr` (port 0 for any).
async fn tls_server(pki: &Pki, addr: SocketAddr) -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(pki.chain.clone(), pki.key.clone_key())
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_reuseaddr(true).unwrap();
    sock.bind(addr).unwrap();
    let l: TcpListener = sock.listen(64).unwrap();
    let local = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        while let Ok((s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            conns.spawn(async move {
                let Ok(mut s) = acceptor.accept(s).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (local, task)
}

/// A manager and one connection to `localhost:port`, recording its calls.
fn connect_localhost(port: u16, calls: &Recorder, opts: redial::Options) -> (Manager, Connection) {
    let cm = Manager::new();
    let conn = cm
        .connect_with(("localhost", port), calls.handler(), opts)
        .unwrap();
    (cm, conn)
}

fn opts(tls: TlsConfig) -> redial::Options {
    fast_options(20, 100)
        .tls(tls)
        .connect_timeout(Duration::from_secs(5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connects_verifies_and_echoes() {
    let pki = pki();
    let (addr, _server) = tls_server(&pki, "127.0.0.1:0".parse().unwrap()).await;
    let calls = Recorder::new();
    let cm = Manager::new();
    let h = calls.handler().on_connect(|s| s.send("over tls").unwrap());
    let conn = cm
        .connect_with(
            ("localhost", addr.port()),
            h,
            opts(TlsConfig::with_roots(roots(&pki.ca))),
        )
        .unwrap();
    calls.wait_saw(b"over tls", 10).await;
    // Large writes go through the TLS records intact.
    let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    conn.send(&big).unwrap();
    let want = String::from_utf8(big).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = String::from_utf8(calls.received()).unwrap();
        if got.len() >= "over tls".len() + want.len() {
            assert_eq!(&got["over tls".len()..], want);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "echoed {} bytes",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    conn.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_host_name_is_refused_as_a_failed_attempt() {
    let pki = pki();
    let (addr, _server) = tls_server(&pki, "127.0.0.1:0".parse().unwrap()).await;
    let calls = Recorder::new();
    let cm = Manager::new();
    let tls = TlsConfig::with_roots(roots(&pki.ca))
        .server_name("not-localhost.example")
        .unwrap();
    let conn = cm
        .connect_with(addr, calls.handler(), opts(tls).max_attempts(2))
        .unwrap();
    conn.closed().await;
    let failed = calls
        .labels()
        .into_iter()
        .find(|c| c.starts_with("failed"))
        .unwrap();
    assert!(
        failed.contains("TLS") && failed.contains("not valid for name"),
        "{failed}"
    );
    assert_eq!(calls.count("connect"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_ca_is_refused() {
    let pki = pki();
    let other = pki_other_ca();
    let (addr, _server) = tls_server(&pki, "127.0.0.1:0".parse().unwrap()).await;
    let calls = Recorder::new();
    let (_cm, conn) = connect_localhost(
        addr.port(),
        &calls,
        opts(TlsConfig::with_roots(roots(&other))).max_attempts(2),
    );
    conn.closed().await;
    let failed = calls
        .labels()
        .into_iter()
        .find(|c| c.starts_with("failed"))
        .unwrap();
    assert!(
        failed.contains("UnknownIssuer") || failed.contains("unknown issuer"),
        "{failed}"
    );
    assert_eq!(calls.count("connect"), 0);
}

fn pki_other_ca() -> CertificateDer<'static> {
    pki_named("some other CA").ca
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plaintext_server_is_never_connected_to() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nplain").await;
        }
    });
    let calls = Recorder::new();
    let (_cm, conn) = connect_localhost(
        addr.port(),
        &calls,
        opts(TlsConfig::webpki()).max_attempts(2),
    );
    conn.closed().await;
    assert_eq!(calls.count("failed"), 2);
    assert_eq!(calls.count("connect"), 0);
    assert_eq!(calls.received_len(), 0, "plaintext reached the application");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_reconnects_after_the_server_restarts() {
    let pki = pki();
    let (addr, server) = tls_server(&pki, "127.0.0.1:0".parse().unwrap()).await;
    let calls = Recorder::new();
    let cm = Manager::new();
    let h = calls
        .handler()
        .on_connect(|s| s.send(format!("gen{}", s.generation())).unwrap());
    let conn = cm
        .connect_with(
            ("localhost", addr.port()),
            h,
            opts(TlsConfig::with_roots(roots(&pki.ca))),
        )
        .unwrap();
    calls.wait_saw(b"gen1", 10).await;
    server.abort();
    let _ = server.await;
    calls.wait("reset", 1, 10).await;
    // Down for at least one attempt: a real reconnect after an outage.
    calls.wait("failed", 1, 10).await;
    let (_, _server) = tls_server(&pki, addr).await;
    calls.wait_saw(b"gen2", 10).await;
    assert_eq!(conn.state(), State::Connected);
    conn.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_resets_during_the_handshake_is_a_failed_attempt() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let mut hello = [0u8; 64];
            let _ = s.read(&mut hello).await; // the ClientHello starts...
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(s); // ...and the peer resets
        }
    });
    let calls = Recorder::new();
    let (_cm, conn) = connect_localhost(
        addr.port(),
        &calls,
        opts(TlsConfig::webpki()).max_attempts(3),
    );
    let reason = tokio::time::timeout(Duration::from_secs(10), conn.closed())
        .await
        .unwrap();
    assert!(
        matches!(reason, redial::CloseReason::GaveUp { attempts: 3, .. }),
        "{reason:?}"
    );
    assert_eq!(calls.count("failed"), 3, "{:?}", calls.labels());
    assert_eq!(
        calls.count("reset"),
        0,
        "a handshake failure is not a reset"
    );
    assert_eq!(calls.count("connect"), 0);
}
