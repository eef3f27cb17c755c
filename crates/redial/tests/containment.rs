//! A panic in a handler closes only its own connection, and bad input is
//! an error naming the input, never a panic.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use redial::{CloseReason, ConnectError, EndpointError, EventKind, Manager, Options, State};
use support::{fast_options, Recorder, TestServer};
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_handler_closes_only_its_own_connection() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let mut events = cm.events();
    let calls = Recorder::new();
    let c = calls.clone();
    let bad = redial::handler()
        .on_data(|_, data| {
            if data == b"boom" {
                panic!("handler exploded on purpose");
            }
        })
        .on_close(move |cl| c.note(format!("bad close {}", cl.reason())));
    let bad = cm
        .connect_with(server.addr, bad, fast_options(10, 100))
        .unwrap();
    let mut bad_peer = server.next(5).await;
    let good = cm
        .connect_with(server.addr, calls.handler(), fast_options(10, 100))
        .unwrap();
    let mut good_peer = server.next(5).await;
    bad.wait_connected().await.unwrap();
    good.wait_connected().await.unwrap();

    bad_peer.stream.write_all(b"boom").await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), bad.closed())
        .await
        .unwrap();
    match &reason {
        CloseReason::HandlerPanicked { callback, message } => {
            assert_eq!(*callback, "on_data");
            assert!(message.contains("exploded"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    calls
        .wait("bad close handler panicked in on_data", 1, 5)
        .await;
    // The event stream says so too.
    let mut saw = false;
    while let Some(e) = events.try_recv() {
        if let EventKind::Closed {
            reason: CloseReason::HandlerPanicked { .. },
            ..
        } = e.kind
        {
            assert_eq!(e.connection, bad.id());
            saw = true;
        }
    }
    assert!(saw, "no Closed event for the panic");

    // The other connection and the manager are untouched.
    good_peer.stream.write_all(b"still here").await.unwrap();
    calls.wait_saw(b"still here", 5).await;
    assert_eq!(good.state(), State::Connected);
    // No reconnect of the panicked one: a quiet window.
    assert!(
        server.try_next(Duration::from_millis(300)).await.is_none(),
        "the panicked one reconnected"
    );
    let third = cm.connect(server.addr, redial::handler()).unwrap();
    third.wait_connected().await.unwrap();
    cm.disconnect_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_on_connect_is_contained_too() {
    let server = TestServer::start().await;
    let cm = Manager::new();
    let h = redial::handler()
        .on_connect(|_| panic!("no"))
        .on_data(|_, _| {});
    let conn = cm
        .connect_with(server.addr, h, fast_options(10, 100))
        .unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), conn.closed())
        .await
        .unwrap();
    assert!(
        matches!(
            reason,
            CloseReason::HandlerPanicked {
                callback: "on_connect",
                ..
            }
        ),
        "{reason:?}"
    );
}

#[test]
fn bad_endpoints_are_errors_naming_the_input() {
    let cm = Manager::new();
    type Check = fn(&EndpointError) -> bool;
    let cases: &[(&str, Check)] = &[
        ("", |e| matches!(e, EndpointError::Empty)),
        ("localhost", |e| {
            matches!(e, EndpointError::MissingPort { .. })
        }),
        ("localhost:70000", |e| {
            matches!(e, EndpointError::PortOutOfRange { .. })
        }),
        ("localhost:0", |e| {
            matches!(e, EndpointError::PortZero { .. })
        }),
        ("%%garbage%%:80", |e| {
            matches!(e, EndpointError::InvalidHost { .. })
        }),
        ("just garbage", |e| {
            matches!(e, EndpointError::MissingPort { .. })
        }),
        ("unix:", |e| {
            matches!(e, EndpointError::EmptyUnixPath { .. })
        }),
    ];
    for (input, ok) in cases {
        match cm.connect(*input, redial::handler()) {
            Err(ConnectError::Endpoint(e)) => {
                assert!(ok(&e), "{input:?}: {e:?}");
                if !input.is_empty() {
                    assert!(e.to_string().contains(input), "{input:?}: {e}");
                }
            }
            other => panic!("{input:?}: {other:?}"),
        }
    }
    assert!(cm.connections().is_empty());
}

#[test]
fn bad_options_are_errors_naming_the_option() {
    let cm = Manager::new();
    let cases = [
        (
            Options::new().connect_timeout(Duration::ZERO),
            "connect_timeout",
        ),
        (Options::new().max_attempts(0), "max_attempts"),
        (Options::new().send_queue_limit(0), "send_queue_limit"),
        (
            Options::new().idle_timeout(Some(Duration::ZERO)),
            "idle_timeout",
        ),
        (
            Options::new().restart_intensity(0, Duration::from_secs(1)),
            "restart_intensity",
        ),
    ];
    for (opts, name) in cases {
        let err = cm
            .connect_with("127.0.0.1:1", redial::handler(), opts)
            .unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
    }
}

#[test]
fn a_manager_outside_tokio_owns_its_runtime() {
    let cm = Manager::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let conn = cm
        .connect(
            addr,
            redial::handler()
                .on_connect(move |_| tx.send(()).unwrap())
                .on_data(|_, _| {}),
        )
        .unwrap();
    let (_peer, _) = listener.accept().unwrap();
    rx.recv_timeout(Duration::from_secs(5)).unwrap();
    conn.disconnect().wait_blocking().unwrap();
    assert_eq!(conn.state(), State::Closed);
}

#[test]
fn the_global_manager_serves_the_module_functions() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let conn = redial::connect(addr, redial::handler()).unwrap();
    assert_eq!(redial::get_connection(addr).unwrap().id(), conn.id());
    let pool = redial::create_pool("containment-global").unwrap();
    assert!(redial::create_pool("containment-global").is_err());
    assert_eq!(
        redial::get_pool("containment-global").unwrap().name(),
        pool.name()
    );
    conn.disconnect().wait_blocking().unwrap();
    assert!(redial::get_connection(addr).is_none());
}
