//! [`Pool::pick_for`]: a key's member, by rendezvous (highest-random-weight)
//! hashing over the members the pool uses now.
//!
//! Each live member scores the key; the highest score wins. A member that
//! goes down takes only its own keys with it (each moves to its second
//! choice), and they come back when it returns: no ring, no table, and
//! nothing to rebuild when membership changes. The hash is fixed (FNV-1a
//! with a 64-bit finaliser), so processes that see the same members map
//! keys the same way.

use super::Pool;
use crate::handle::connection::Connection;

/// FNV-1a offset basis and prime (64-bit).
const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv1a(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(FNV_PRIME);
    }
    h
}

/// The finaliser of splitmix64: FNV alone mixes the last bytes poorly,
/// and rendezvous hashing needs every bit of the score to depend on both
/// the key and the member.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The score of `key` on the member named `member`.
fn score(member: &[u8], key: u64) -> u64 {
    mix(fnv1a(FNV_OFFSET, member) ^ key)
}

/// The names members are scored under: the endpoint as written, with
/// `#n` for the n-th member (in the order added) to that same endpoint,
/// so several connections to one server are distinct and a member keeps
/// its name while it is down.
fn member_names(members: &[Connection]) -> Vec<(u64, String)> {
    let mut names: Vec<(u64, String)> = Vec::with_capacity(members.len());
    let mut seen: Vec<String> = Vec::new();
    for c in members {
        let ep = c.endpoint().to_string();
        let n = seen.iter().filter(|e| **e == ep).count();
        names.push((c.id(), format!("{ep}#{n}")));
        seen.push(ep);
    }
    names
}

impl Pool {
    /// The live member that owns `key`, by rendezvous (highest random
    /// weight) hashing; `None` when no member is live.
    ///
    /// The same key goes to the same member for as long as it is live.
    /// When a member goes down only its keys move (about 1/N of them with N
    /// members), each to the member that scores it next; the others stay
    /// where they are, and the moved keys come back when it returns. Live
    /// means what it means for [`Pool::pick`]. Members are scored by
    /// endpoint as written (and their rank among members to the same
    /// endpoint), not by id, so two processes with the same members agree
    /// on every key.
    ///
    /// ```no_run
    /// # fn f(pool: redial::Pool) {
    /// if let Some(conn) = pool.pick_for("user:42") {
    ///     let _ = conn.send("get user:42\r\n");
    /// }
    /// # }
    /// ```
    pub fn pick_for(&self, key: impl AsRef<[u8]>) -> Option<Connection> {
        let live = self.usable().members;
        if live.is_empty() {
            return None;
        }
        // Names come from every member, live or not, so a member's name
        // does not change when another to the same endpoint goes down.
        let names = member_names(&self.connections());
        let key = fnv1a(FNV_OFFSET, key.as_ref());
        live.into_iter()
            .map(|c| {
                let s = names.iter().find(|(id, _)| *id == c.id()).map_or_else(
                    || score(&c.id().to_le_bytes(), key),
                    |(_, n)| score(n.as_bytes(), key),
                );
                (s, c)
            })
            .max_by_key(|(s, c)| (*s, std::cmp::Reverse(c.id())))
            .map(|(_, c)| c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys spread evenly over names, and removing one name moves only
    /// its keys: the property `pick_for` relies on, without sockets.
    #[test]
    fn removing_a_member_moves_only_its_keys() {
        let names: Vec<String> = (0..5).map(|i| format!("10.0.0.{i}:11211#0")).collect();
        let owner = |names: &[String], k: u64| {
            names
                .iter()
                .enumerate()
                .max_by_key(|(_, n)| score(n.as_bytes(), k))
                .map(|(i, _)| i)
                .unwrap_or(0)
        };
        let keys: Vec<u64> = (0..10_000u32)
            .map(|i| fnv1a(FNV_OFFSET, format!("key{i}").as_bytes()))
            .collect();
        let before: Vec<usize> = keys.iter().map(|k| owner(&names, *k)).collect();
        let mut counts = [0usize; 5];
        for o in &before {
            counts[*o] += 1;
        }
        for c in counts {
            assert!((1_700..=2_300).contains(&c), "uneven spread: {counts:?}");
        }
        let fewer: Vec<String> = names
            .iter()
            .filter(|n| !n.starts_with("10.0.0.2"))
            .cloned()
            .collect();
        for (k, b) in keys.iter().zip(&before) {
            let now = owner(&fewer, *k);
            if *b != 2 {
                assert_eq!(fewer[now], names[*b], "a key of a live member moved");
            }
        }
    }
}
