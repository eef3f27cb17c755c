//! redial against a real Redis, end to end: the example's subscriber and
//! publisher (`examples/redis_subscriber.rs`, included below so the code
//! users read is the code tested) across SIGKILL restarts of redis-server
//! on the same port.
//!
//! Needs the `redis-server` binary; without it the tests say they were
//! skipped (and fail when `REDIAL_REQUIRE_SERVERS=1`, as in CI).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

#[path = "../examples/redis_subscriber.rs"]
#[allow(dead_code)]
mod redis_subscriber;

use std::time::{Duration, Instant};

use redial::{Manager, Options, State};
use redis_subscriber::{Publisher, RedisError, SubEvent, Subscriber};
use support::servers::{redis_info, wait_client_count, Kind, Server};

const CHANNEL: &str = "redial:e2e";
/// SIGKILL + restart cycles.
const RESTARTS: u64 = 3;
/// Messages published on each connection of the subscriber.
const MESSAGES: usize = 200;
/// How long redis-server stays down, so reconnect attempts fail and back off.
const DOWN_FOR: Duration = Duration::from_millis(300);
/// Backoff cap (1 s, +20 % jitter) plus a generous margin: the subscriber
/// must be subscribed again this soon after Redis is back.
const RECOVERY_BOUND: Duration = Duration::from_secs(5);
/// Waiting longer than this for an event or a reply counts as a hang.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

fn options() -> Options {
    support::servers::restart_options()
}

async fn next_event(sub: &mut Subscriber) -> SubEvent {
    tokio::time::timeout(EVENT_TIMEOUT, sub.next_event())
        .await
        .expect("no subscriber event in time")
        .expect("the subscriber closed")
}

/// Publishes until Redis takes it (the publisher may still be
/// reconnecting); returns the receiver count.
async fn publish_when_up(publisher: &Publisher, payload: &[u8]) -> i64 {
    let deadline = Instant::now() + RECOVERY_BOUND;
    loop {
        match publisher.publish(CHANNEL, payload).await {
            Ok(n) => return n,
            Err(e) => {
                assert!(e.is_connection_loss(), "publish failed with {e:?}");
                assert!(
                    Instant::now() < deadline,
                    "publisher not back within {RECOVERY_BOUND:?}: {e}"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Publishes [`MESSAGES`] messages and checks the subscriber gets every one,
/// in order, on connection `generation`. Returns when the first message was
/// delivered.
async fn publish_and_receive(
    publisher: &Publisher,
    sub: &mut Subscriber,
    tag: &str,
    generation: u64,
) -> Instant {
    let mut first_delivered = None;
    for i in 0..MESSAGES {
        let payload = format!("{tag}:{i}");
        let receivers = publish_when_up(publisher, payload.as_bytes()).await;
        assert_eq!(receivers, 1, "{payload}: Redis saw {receivers} subscribers");
        if i == 0 {
            let want = SubEvent::Message {
                channel: CHANNEL.to_string(),
                payload: payload.into_bytes(),
                generation,
            };
            assert_eq!(next_event(sub).await, want);
            first_delivered = Some(Instant::now());
        }
    }
    for i in 1..MESSAGES {
        let want = SubEvent::Message {
            channel: CHANNEL.to_string(),
            payload: format!("{tag}:{i}").into_bytes(),
            generation,
        };
        assert_eq!(next_event(sub).await, want);
    }
    first_delivered.expect("MESSAGES > 0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_subscriber_resubscribes_once_per_reconnect_and_receives_later_messages() {
    let test = "redis_subscriber_resubscribes_once_per_reconnect_and_receives_later_messages";
    let Some(mut server) = Server::start_or_skip(Kind::Redis, test) else {
        return;
    };
    let cm = Manager::new();
    let addr = server.addr().to_string();
    let mut sub = Subscriber::connect(&cm, &addr, &[CHANNEL], options(), false).unwrap();
    let publisher = Publisher::connect(&cm, &addr, options(), false).unwrap();

    let subscribed = |generation| SubEvent::Subscribed {
        channel: CHANNEL.to_string(),
        generation,
    };
    assert_eq!(next_event(&mut sub).await, subscribed(1));
    publish_and_receive(&publisher, &mut sub, "first", 1).await;

    let mut recoveries = Vec::new();
    let mut last_generation = 1;
    for restart in 1..=RESTARTS {
        server.kill();
        // Both connections notice the kill before Redis is back, so this
        // is a real reconnect and not a lucky race.
        let deadline = Instant::now() + EVENT_TIMEOUT;
        while sub.connection().state() == State::Connected
            || publisher.connection().state() == State::Connected
        {
            assert!(Instant::now() < deadline, "the kill went unnoticed");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(DOWN_FOR).await;
        let up = tokio::task::block_in_place(|| server.restart());

        // The first thing the new connection does is subscribe again. A
        // loss is retried at once, so a connection can also land in the
        // dying server's backlog and be reset before it is confirmed: the
        // confirmation comes from a later generation then, never twice.
        let generation = match next_event(&mut sub).await {
            SubEvent::Subscribed {
                channel,
                generation: g,
            } if channel == CHANNEL && g > last_generation => g,
            other => panic!("restart {restart}: expected a new subscription, got {other:?}"),
        };
        last_generation = generation;
        let resubscribed = up.elapsed();
        assert!(
            resubscribed <= RECOVERY_BOUND,
            "restart {restart}: subscribed again only after {resubscribed:?}"
        );
        let tag = format!("after-restart-{restart}");
        let delivered = publish_and_receive(&publisher, &mut sub, &tag, generation).await;
        recoveries.push((resubscribed, delivered.duration_since(up)));
    }
    eprintln!("redis: (re-subscribed, first message delivered) after each restart: {recoveries:?}");

    // Exactly one SUBSCRIBE per connection: the first in on_connect, then
    // one from the resume entry per reconnect, and no extra confirmation.
    let stats = sub.connection().stats();
    assert_eq!(stats.connects, last_generation, "{stats:?}");
    assert_eq!(stats.resets, stats.connects - 1, "{stats:?}");
    assert_eq!(sub.resubscribes(), stats.connects - 1);
    assert_eq!(sub.subscribes_sent(), stats.connects);
    // No late extra confirmation: a quiet window.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(sub.try_next_event(), None);

    // Redis sees our two connections (plus the probe) before, and only the
    // probe after disconnect_all.
    assert_eq!(
        wait_client_count(&server, 3, Duration::from_secs(5)).await,
        3
    );
    tokio::time::timeout(EVENT_TIMEOUT, cm.disconnect_all())
        .await
        .expect("disconnect_all did not finish");
    assert!(cm.connections().is_empty());
    let after = wait_client_count(&server, 1, Duration::from_secs(5)).await;
    assert_eq!(
        after, 1,
        "Redis still counts clients after disconnect_all (1 is the probe itself)"
    );
    // After the close nothing hangs: the publisher refuses, the event
    // stream ends.
    assert!(publisher
        .publish(CHANNEL, b"late")
        .await
        .unwrap_err()
        .is_connection_loss());
    assert_eq!(
        tokio::time::timeout(EVENT_TIMEOUT, sub.next_event())
            .await
            .unwrap(),
        None
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_commands_waiting_at_sigkill_fail_with_reset_error() {
    let test = "redis_commands_waiting_at_sigkill_fail_with_reset_error";
    let Some(mut server) = Server::start_or_skip(Kind::Redis, test) else {
        return;
    };
    let cm = Manager::new();
    let publisher = Publisher::connect(&cm, &server.addr().to_string(), options(), false).unwrap();
    publisher.connection().wait_connected().await.unwrap();

    // A command that blocks on the server: its reply can only come after
    // the kill, so it must fail with a reset error, not hang.
    let blocked = {
        let p = publisher.clone();
        tokio::spawn(async move { p.command(&[b"BLPOP", b"redial:never", b"0"]).await })
    };
    // Wait until Redis has it: it shows as a blocked client.
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while redis_info(server.addr(), "clients", "blocked_clients")
        .await
        .ok()
        != Some(1)
    {
        assert!(Instant::now() < deadline, "BLPOP never reached Redis");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill();
    let result = tokio::time::timeout(EVENT_TIMEOUT, blocked)
        .await
        .expect("the blocked command hung after the kill")
        .unwrap();
    assert!(
        matches!(result, Err(RedisError::Reset(_))),
        "blocked command ended with {result:?}"
    );

    let up = tokio::task::block_in_place(|| server.restart());
    let n = publish_when_up(&publisher, b"hello").await;
    assert_eq!(n, 0);
    eprintln!("redis publisher recovery after restart: {:?}", up.elapsed());
    cm.disconnect_all().await;
    assert_eq!(
        wait_client_count(&server, 1, Duration::from_secs(5)).await,
        1
    );
}
