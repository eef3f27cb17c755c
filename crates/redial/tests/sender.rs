//! `Sender`: a producer's own buffer in front of a connection. It holds
//! sends until a batch is full or it is flushed, delivers everything in
//! order, hands refused bytes back whole, and never drops bytes silently,
//! not even when it is dropped itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use redial::{Connection, Manager, SendError, Sender, State};
use support::{fast_options, in_buffered_outage, read_to_end, TestServer};

/// A connection to `server` with the tests' fast schedule, once connected.
async fn connected(cm: &Manager, server: &TestServer) -> Connection {
    let conn = cm
        .connect_with(server.addr, redial::handler(), fast_options(10, 100))
        .unwrap();
    conn.wait_connected().await.unwrap();
    conn
}

/// `n` numbered messages of 64 bytes: the sink can check order and count.
fn message(i: u32) -> Vec<u8> {
    let mut m = i.to_be_bytes().repeat(16);
    m[63] = b'\n';
    m
}

#[test]
fn a_sender_can_move_to_another_task() {
    fn send<T: Send + 'static>() {}
    send::<redial::Sender>();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_holds_until_flushed_and_delivers_everything_in_order() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let conn = connected(&cm, &server).await;
    let peer = server.next(5).await;
    let mut tx = conn.sender();
    tx.send(message(0)).unwrap();
    tx.write(message(1)).await.unwrap();
    // Below a batch: held by the sender, not yet the connection's.
    assert_eq!(tx.held(), 128);
    assert_eq!(conn.stats().queued + conn.stats().bytes_out as usize, 0);
    tx.flush().await.unwrap();
    assert_eq!(tx.held(), 0);
    // Many batches' worth, then the rest on flush.
    let n = 3 * (Sender::BATCH / 64) as u32 + 17;
    for i in 2..n {
        tx.write(message(i)).await.unwrap();
        assert!(tx.held() <= Sender::BATCH + 64);
    }
    tx.flush().await.unwrap();
    let reader = tokio::spawn(read_to_end(peer.stream, 20));
    conn.disconnect().await;
    let got = reader.await.unwrap();
    let want: Vec<u8> = (0..n).flat_map(message).collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "bytes arrived out of order");
    assert_eq!(conn.stats().sender_dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_batch_is_handed_over_without_a_flush() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let conn = connected(&cm, &server).await;
    let peer = server.next(5).await;
    let mut tx = conn.sender();
    let n = (Sender::BATCH / 64) as u32;
    for i in 0..n {
        tx.send(message(i)).unwrap();
    }
    assert_eq!(tx.held(), 0, "a full batch stays with the sender");
    // The connection writes it with the sender still alive and unflushed.
    let reader = tokio::spawn(read_to_end(peer.stream, 20));
    support::wait_until("the batch written", Duration::from_secs(30), || {
        conn.stats().bytes_out >= Sender::BATCH as u64
    })
    .await;
    conn.disconnect().await;
    assert_eq!(reader.await.unwrap().len(), Sender::BATCH);
    drop(tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_hand_over_returns_every_held_byte_in_order() {
    let mut server = TestServer::start().await;
    server.stop_listening().await;
    let cm = Manager::new();
    let conn = cm
        .connect_with(server.addr, redial::handler(), fast_options(20, 50))
        .unwrap();
    let mut tx = conn.sender();
    tx.send("a;").unwrap();
    tx.send("b;").unwrap();
    tx.send("c;").unwrap();
    match tx.try_flush() {
        Err(SendError::NotConnected { data }) => assert_eq!(data, b"a;b;c;"),
        other => panic!("expected NotConnected, got {other:?}"),
    }
    assert_eq!(tx.held(), 0, "the error took the bytes");
    tx.send("d;").unwrap();
    assert_eq!(
        tx.flush().await.unwrap_err(),
        SendError::NotConnected {
            data: b"d;".to_vec()
        }
    );
    drop(tx);
    assert_eq!(conn.stats().sender_dropped, 0, "nothing was held at drop");
    conn.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_refuses_a_try_flush_and_write_waits_for_room() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let opts = fast_options(10, 100)
        .send_queue_limit(Sender::BATCH)
        .configure_socket(|s| s.set_send_buffer_size(4096));
    let conn = cm
        .connect_with(server.addr, redial::handler(), opts)
        .unwrap();
    let peer = server.next(5).await;
    conn.wait_connected().await.unwrap();
    let mut tx = conn.sender();
    // The peer does not read yet: hand over until the queue refuses.
    let mut refused = None;
    for round in 0..10_000u64 {
        tx.send(vec![7u8; 1000]).unwrap();
        if let Err(e) = tx.try_flush() {
            refused = Some((round, e));
            break;
        }
    }
    let (accepted_rounds, e) = refused.expect("the queue never filled");
    match e {
        SendError::Full { data, limit, .. } => {
            assert_eq!(data, vec![7u8; 1000]);
            assert_eq!(limit, Sender::BATCH);
        }
        other => panic!("expected Full, got {other:?}"),
    }
    // Now the peer reads, and `write` waits for room instead of failing.
    let reader = tokio::spawn(read_to_end(peer.stream, 20));
    let before = accepted_rounds * 1000;
    let total = 2 << 20;
    for _ in 0..total / 1000 {
        tx.write([9u8; 1000]).await.unwrap();
    }
    tx.flush().await.unwrap();
    conn.disconnect().await;
    let got = reader.await.unwrap();
    assert_eq!(got.len() as u64, before + (total / 1000 * 1000) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_sender_hands_over_what_it_held() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let conn = connected(&cm, &server).await;
    let peer = server.next(5).await;
    let mut tx = conn.sender();
    tx.send("held until the drop").unwrap();
    drop(tx);
    let reader = tokio::spawn(read_to_end(peer.stream, 20));
    conn.disconnect().await;
    assert_eq!(reader.await.unwrap(), b"held until the drop");
    assert_eq!(conn.stats().sender_dropped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_sender_whose_bytes_are_refused_counts_them() {
    let server = TestServer::start().await;
    let cm = Manager::new();
    let conn = connected(&cm, &server).await;
    let mut tx = conn.sender();
    tx.send("12345").unwrap();
    conn.disconnect().await;
    assert_eq!(conn.state(), State::Closed);
    drop(tx);
    assert_eq!(conn.stats().sender_dropped, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_after_the_connection_closed_is_refused_at_once_with_what_was_held() {
    let server = TestServer::start().await;
    let cm = Manager::new();
    let conn = connected(&cm, &server).await;
    let mut tx = conn.sender();
    let mut late = conn.sender();
    tx.send("held;").unwrap();
    conn.disconnect().await;
    assert_eq!(
        tx.send("after").unwrap_err(),
        SendError::Disconnected {
            data: b"held;after".to_vec()
        }
    );
    assert_eq!(
        late.write("x").await.unwrap_err(),
        SendError::Disconnected {
            data: b"x".to_vec()
        }
    );
    drop((tx, late));
    assert_eq!(conn.stats().sender_dropped, 0, "nothing was left to drop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_during_an_outage_follows_the_buffer_policy() {
    let mut server = TestServer::start().await;
    let cm = Manager::new();
    let conn = in_buffered_outage(&cm, &mut server, 1000).await;
    let mut tx = conn.sender();
    for i in 0..10 {
        tx.send(format!("m{i};")).unwrap();
    }
    tx.try_flush().unwrap();
    tx.send(vec![b'x'; 2000]).unwrap();
    match tx.try_flush() {
        Err(SendError::OutageBufferFull { data, limit, .. }) => {
            assert_eq!(data.len(), 2000);
            assert_eq!(limit, 1000);
        }
        other => panic!("expected OutageBufferFull, got {other:?}"),
    }
    server.relisten().await;
    let second = server.next(5).await;
    conn.wait_connected().await.unwrap();
    conn.disconnect();
    let got = String::from_utf8(read_to_end(second.stream, 10).await).unwrap();
    assert_eq!(got, "hello2;m0;m1;m2;m3;m4;m5;m6;m7;m8;m9;");
}
