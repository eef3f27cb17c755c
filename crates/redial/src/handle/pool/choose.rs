//! Which members of a pool take work now, and every call that uses them:
//! [`Pool::pick`], [`Pool::pick_least_queued`], [`Pool::send`],
//! [`Pool::send_wait`], [`Pool::live`], [`Pool::is_ready`] and the waits
//! ([`Pool::pick_for`] in `keyed.rs` uses the same rule).
//! One rule ([`Pool::usable`]) serves them all, so they never contradict
//! each other: a member counted live is a member a pick can return.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::futures::Notified;
use tokio::time::Instant;

use super::Pool;
use crate::error::SendError;
use crate::handle::connection::Connection;
use crate::queue::Refused;
use crate::shared::Usability;

/// The members a pool uses now.
pub(super) struct Usable {
    /// In the order they were added.
    pub(super) members: Vec<Connection>,
    /// How soon a flapping member becomes usable by time alone, when one
    /// is up: the set may change then without any notification.
    next_change: Option<Duration>,
}

impl Pool {
    /// The members to use now: those up, taking sends and not flapping;
    /// when every member that is up flaps, those that lost the fewest
    /// connections in a row. A flap count alone never takes a whole pool
    /// out of rotation (as Envoy's panic threshold).
    pub(super) fn usable(&self) -> Usable {
        let mut dependable = Vec::new();
        let mut flapping: Vec<(u32, Connection)> = Vec::new();
        let mut next_change: Option<Duration> = None;
        for c in self.members().iter() {
            match c.shared.usability() {
                Usability::No => {}
                Usability::Yes => dependable.push(c.clone()),
                Usability::Flapping { losses, stable_in } => {
                    next_change = Some(next_change.map_or(stable_in, |d| d.min(stable_in)));
                    flapping.push((losses, c.clone()));
                }
            }
        }
        let members = if dependable.is_empty() {
            let fewest = flapping.iter().map(|(l, _)| *l).min();
            flapping
                .into_iter()
                .filter(|(l, _)| Some(*l) == fewest)
                .map(|(_, c)| c)
                .collect()
        } else {
            dependable
        };
        Usable {
            members,
            next_change,
        }
    }

    /// The next turn of the round robin, among `n` members.
    fn turn(&self, n: usize) -> usize {
        self.inner.next.fetch_add(1, Ordering::Relaxed) % n.max(1)
    }

    /// A live member, round-robin over the live ones only (a member that is
    /// down takes no turn, so its share is spread over all the others);
    /// `None` when none is up.
    ///
    /// Live means: connected, taking sends (not disconnecting), and not
    /// flapping. A member flaps when its last
    /// [`Pool::FLAPPING_AFTER`](crate::Pool::FLAPPING_AFTER) connections were each lost
    /// before [`Options::stable_after`](crate::Options::stable_after) and
    /// made again at once: it is skipped until its current connection has
    /// stayed up that long. When every member that is up flaps, the pool
    /// uses those that lost the fewest rather than none.
    /// [`Pool::live`], [`Pool::is_ready`] and [`Pool::wait_live`] count the
    /// same members.
    ///
    /// ```no_run
    /// # fn f(pool: redial::Pool) {
    /// if let Some(conn) = pool.pick() {
    ///     let _ = conn.send("get k\r\n");
    /// }
    /// # }
    /// ```
    pub fn pick(&self) -> Option<Connection> {
        let mut live = self.usable().members;
        if live.is_empty() {
            return None;
        }
        let i = self.turn(live.len());
        Some(live.swap_remove(i))
    }

    /// The live member with the fewer bytes queued of two distinct live
    /// members picked at random ("power of two choices"): balances by
    /// load, not by turn.
    ///
    /// ```no_run
    /// # fn f(pool: redial::Pool) {
    /// let conn = pool.pick_least_queued();
    /// # let _ = conn;
    /// # }
    /// ```
    pub fn pick_least_queued(&self) -> Option<Connection> {
        let mut live = self.usable().members;
        match live.len() {
            0 => None,
            1 => live.pop(),
            n => {
                let x = self.inner.next.fetch_add(1, Ordering::Relaxed) as u64;
                let h = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let n64 = n as u64;
                let a = h % n64;
                // Another member than `a`: one of the n - 1 others.
                let b = (a + 1 + (h >> 32) % (n64 - 1)) % n64;
                let (a, b) = (a as usize, b as usize);
                let pick = if live[b].queued() < live[a].queued() {
                    b
                } else {
                    a
                };
                Some(live.swap_remove(pick))
            }
        }
    }

    /// Sends to a live member, in turn ([`Pool::pick`]). A member whose
    /// queue is full passes the bytes on to the next live one; they are
    /// handed back only when no live member takes them: in
    /// [`SendError::Full`] when one was full, else in
    /// [`SendError::NoLiveMember`] ([`SendError::PoolEmpty`] for a pool
    /// without connections). An empty `data` goes to no member and returns
    /// `Ok(())`.
    ///
    /// ```no_run
    /// # fn f(pool: redial::Pool) {
    /// if let Err(e) = pool.send("ping\r\n") {
    ///     eprintln!("{e}: {} bytes handed back", e.data().len());
    /// }
    /// # }
    /// ```
    pub fn send(&self, data: impl AsRef<[u8]>) -> Result<(), SendError> {
        let data = data.as_ref();
        if data.is_empty() {
            return Ok(());
        }
        let live = self.usable().members;
        match self.push_any(&live, data, &mut Vec::new()) {
            Ok(()) => Ok(()),
            Err(Some(full)) => Err(self.refused(full.with_data(data.to_vec()))),
            Err(None) => Err(self.refused(self.no_live_member(data))),
        }
    }

    /// A refusal the caller sees, counted in the metrics under the pool.
    /// A member passing the bytes on to the next is no refusal, nor is a
    /// member lost while `send_wait` waited for room in its queue: neither
    /// is counted, under the pool or the member.
    fn refused(&self, err: SendError) -> SendError {
        #[cfg(feature = "metrics")]
        crate::metrics::pool_refused(self.name(), &err);
        err
    }

    /// The error for bytes no member can take now.
    fn no_live_member(&self, data: &[u8]) -> SendError {
        let pool = self.name().to_string();
        let data = data.to_vec();
        match self.connections().len() {
            0 => SendError::PoolEmpty { data, pool },
            members => SendError::NoLiveMember {
                data,
                pool,
                members,
            },
        }
    }

    /// Offers `data` to the members of `live` not in `refused`, starting
    /// at the next turn, without waiting. On failure: the refusal of a
    /// full member if any was full; members that refused for any other
    /// reason (lost or closing since the look) are added to `refused`.
    fn push_any(
        &self,
        live: &[Connection],
        data: &[u8],
        refused: &mut Vec<u64>,
    ) -> Result<(), Option<Refused>> {
        let n = live.len();
        let start = self.turn(n);
        let mut full = None;
        for i in 0..n {
            let c = &live[(start + i) % n];
            if refused.contains(&c.id()) {
                continue;
            }
            match c.shared.push(None, data) {
                Ok(_) => return Ok(()),
                Err(r @ Refused::Full { .. }) => full = full.or(Some(r)),
                Err(_) => refused.push(c.id()),
            }
        }
        Err(full)
    }

    /// Sends to a live member, waiting up to `timeout` for one to be up
    /// (and for room in a queue) instead of failing at once. Fails with
    /// [`SendError::TimedOut`], holding the bytes, when the time is up.
    /// Wakes as soon as a member becomes live, including by time alone (a
    /// flapping member whose connection has stayed up long enough). An
    /// empty `data` returns `Ok(())` at once.
    ///
    /// ```no_run
    /// # async fn f(pool: redial::Pool) -> Result<(), redial::SendError> {
    /// pool.send_wait("ping\r\n", std::time::Duration::from_secs(2)).await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_wait(
        &self,
        data: impl AsRef<[u8]>,
        timeout: std::time::Duration,
    ) -> Result<(), SendError> {
        let data = data.as_ref();
        if data.is_empty() {
            return Ok(());
        }
        let deadline = crate::driver::after(Instant::now(), timeout);
        let timed_out = || {
            self.refused(SendError::TimedOut {
                data: data.to_vec(),
                waited: timeout,
            })
        };
        // Members that refused since the last wake-up: lost or closing
        // after the look. Each pass without a wait adds one at least, so
        // the loop always reaches an await that can wake it.
        let mut refused: Vec<u64> = Vec::new();
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let usable = self.usable();
            let mut live = usable.members;
            live.retain(|c| !refused.contains(&c.id()));
            if live.is_empty() {
                if !wait_change(notified, usable.next_change, Some(deadline)).await {
                    return Err(timed_out());
                }
                refused.clear();
                continue;
            }
            let before = refused.len();
            match self.push_any(&live, data, &mut refused) {
                Ok(()) => return Ok(()),
                // Some refused for good: look again without them.
                Err(_) if refused.len() > before => continue,
                Err(_) => {}
            }
            // Every one is full: wait for room in the one with least queued.
            let Some(c) = live.iter().min_by_key(|c| c.queued()) else {
                continue;
            };
            // Straight at the member's queue, not through
            // `Connection::write`: a member lost meanwhile hands the bytes
            // on to the next, which the caller never sees as a refusal, so
            // the metrics do not count one under the member either.
            let shared = &c.shared;
            let room = shared.push_when_room(|q| q.push(None, data, &shared.opts.outage));
            match tokio::time::timeout_at(deadline, room).await {
                Ok(Ok(_)) => return Ok(()),
                // Lost or closing while it waited for room: try the others.
                Ok(Err(_)) => refused.push(c.id()),
                Err(_) => return Err(timed_out()),
            }
        }
    }

    /// Whether the pool is ready: at least one member is live (see
    /// [`Pool::pick`] for what live means).
    ///
    /// ```no_run
    /// # fn f(pool: redial::Pool) {
    /// if !pool.is_ready() { eprintln!("{} is down", pool.name()); }
    /// # }
    /// ```
    pub fn is_ready(&self) -> bool {
        !self.usable().members.is_empty()
    }

    /// Waits until the pool's readiness differs from `ready` and returns the
    /// new value: `wait_ready_change(true).await` returns when the last live
    /// member is lost, `wait_ready_change(false).await` when one is up.
    ///
    /// ```no_run
    /// # async fn f(pool: redial::Pool) {
    /// let mut ready = pool.is_ready();
    /// loop {
    ///     ready = pool.wait_ready_change(ready).await;
    ///     println!("pool {} ready: {ready}", pool.name());
    /// }
    /// # }
    /// ```
    pub async fn wait_ready_change(&self, ready: bool) -> bool {
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let usable = self.usable();
            let now = !usable.members.is_empty();
            if now != ready {
                return now;
            }
            wait_change(notified, usable.next_change, None).await;
        }
    }

    /// How many members are live: the members [`Pool::pick`] chooses from.
    ///
    /// ```no_run
    /// # fn f(pool: redial::Pool) {
    /// println!("{} of {} up", pool.live(), pool.connections().len());
    /// # }
    /// ```
    pub fn live(&self) -> usize {
        self.usable().members.len()
    }

    /// Waits until at least `n` members are live, including a member that
    /// becomes live by time alone (a flapping member whose connection has
    /// now stayed up [`Options::stable_after`](crate::Options::stable_after)).
    ///
    /// ```no_run
    /// # async fn f(pool: redial::Pool) {
    /// pool.wait_live(3).await;
    /// # }
    /// ```
    pub async fn wait_live(&self, n: usize) {
        loop {
            let notified = self.inner.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let usable = self.usable();
            if usable.members.len() >= n {
                return;
            }
            wait_change(notified, usable.next_change, None).await;
        }
    }
}

/// Waits until a member's state changes (`notified`, armed before the
/// caller looked), a flapping member becomes usable by time alone
/// (`next_change`), or `deadline`. False when the deadline came first.
async fn wait_change(
    notified: Pin<&mut Notified<'_>>,
    next_change: Option<Duration>,
    deadline: Option<Instant>,
) -> bool {
    let far = Instant::now() + Duration::from_secs(86_400 * 365);
    let deadline_at = deadline.unwrap_or(far);
    let change_at = next_change.map_or(far, |d| crate::driver::after(Instant::now(), d));
    tokio::select! {
        _ = notified => true,
        _ = tokio::time::sleep_until(change_at) => true,
        _ = tokio::time::sleep_until(deadline_at) => false,
    }
}
