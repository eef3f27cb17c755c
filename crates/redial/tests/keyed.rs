//! Keyed picking ([`Pool::pick_for`]) against real loopback servers: with
//! N members, when one goes down only its keys move (about 1/N of them),
//! every other key stays on its member, and the moved keys come back when
//! the member returns.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use redial::{Manager, Pool};
use support::TestServer;
use support::{fast_options, wait_until};

const KEYS: usize = 10_000;
const MEMBERS: usize = 5;
const LONG: Duration = Duration::from_secs(20);

/// Each key's member (by id).
fn owners(pool: &Pool) -> Vec<u64> {
    (0..KEYS)
        .map(|i| {
            pool.pick_for(format!("key:{i}"))
                .expect("a live member")
                .id()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_member_down_moves_only_its_keys_and_they_come_back() {
    let mut servers = Vec::new();
    for _ in 0..MEMBERS {
        servers.push(TestServer::sink_on("127.0.0.1").await);
    }
    let cm = Manager::new();
    let pool = cm.create_pool("keyed").unwrap();
    let mut members = Vec::new();
    for s in &servers {
        members.push(
            pool.add_connection_with(s.addr, redial::handler(), fast_options(20, 500))
                .unwrap(),
        );
    }
    tokio::time::timeout(LONG, pool.wait_live(MEMBERS))
        .await
        .expect("all members live");
    let before = owners(&pool);

    let down = 2;
    let down_id = members[down].id();
    servers[down].down().await;
    wait_until("the member is down", LONG, || pool.live() == MEMBERS - 1).await;
    let during = owners(&pool);
    let mut moved = 0;
    for (b, d) in before.iter().zip(&during) {
        if *b == down_id {
            assert_ne!(*d, down_id, "a key stayed on the member that is down");
            moved += 1;
        } else {
            assert_eq!(b, d, "a key of a live member moved");
        }
    }
    // 1/N of the keys, within ±20 % of that share (2,000 ± 400 here);
    // the hash's spread over 10,000 keys is a few per cent.
    let share = KEYS / MEMBERS;
    eprintln!(
        "keys moved when 1 of {MEMBERS} members went down: {moved} of {KEYS} (1/N = {share})"
    );
    assert!(
        (share * 8 / 10..=share * 12 / 10).contains(&moved),
        "{moved} keys moved, expected about {share}"
    );

    servers[down].up().await;
    tokio::time::timeout(LONG, pool.wait_live(MEMBERS))
        .await
        .expect("the member came back");
    assert_eq!(owners(&pool), before, "the keys did not all come back");
    pool.disconnect().await;
}

#[tokio::test]
async fn no_live_member_no_key_owner() {
    let cm = Manager::new();
    let pool = cm.create_pool("empty").unwrap();
    assert!(pool.pick_for("k").is_none());
}
