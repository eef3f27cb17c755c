//! One probe per endpoint during an outage.
//!
//! When connect attempts to an endpoint fail, one of its connections (the
//! prober) keeps trying (on the schedule below) and the others wait without
//! attempts of their own; the first success releases them all (through the
//! manager's cap on attempts in flight). Ten thousand connections to a dead
//! server then cost one connection's attempts, not ten thousand schedules'
//! worth of SYNs, timers and callbacks.
//!
//! The same holds from the moment connections are lost: a connection that
//! backs off while another connection to the endpoint is due to attempt no
//! later than it (the scout) waits for that attempt's verdict instead of
//! keeping a timer of its own. When a server dies with ten thousand
//! connections, one scout finds it down and the rest are parked at once,
//! without a timer firing for each of them; when the scout gets through,
//! the others go back to their own schedules.
//!
//! And before either: when a connection to the endpoint is lost, the
//! endpoint is in doubt until an attempt to it has a verdict. The first
//! connection to attempt then tries it and the others wait for that one
//! attempt, instead of every connection whose loss came at the same moment
//! (up to the manager's cap at once) dialling a server that may have just
//! died. A success lets them all go; a failure makes the one that tried
//! the prober.
//!
//! Only connections that never give up take part: one with `max_attempts`
//! or `give_up_after` counts its own attempts, so it always makes them.
//!
//! ## How often the probe looks
//!
//! A connection's own backoff doubles, so after an outage of length T its
//! next attempt can be about T away: ten thousand connections waiting on
//! it would come back seconds after the server did. The probe stands in
//! for all of them, so it may look more often, and [`probe_delay`] decides
//! how much more. Its rule, with `D` the delay the prober's own schedule
//! chose, `n` the connections sharing the probe and `T` how long the
//! endpoint has been down:
//!
//! ```text
//! bound = max(500 ms, T / 16)        // notice a return within ~6 % of T
//! own_t = min(max, initial + (m - 1) * T)
//!                                    // the delay one connection's own
//!                                    // schedule (initial, multiplier m,
//!                                    // max) has reached after T
//! fast  = max(bound, own_t / n)      // never faster than n schedules
//! delay = D                          if n = 1 or fast >= D
//!       = fast * (1 - 0.2 * u)       otherwise, u uniform in [0, 1)
//! ```
//!
//! Once the outage is a few seconds old each probe waits ~1/16 longer than
//! the one before (the delays grow by ~1.06x, not 2x), so the number of
//! probes grows with the logarithm of the outage: about 25 in a 10 s
//! outage, 55-60 in 60 s, 90 in 5 minutes, and the return is noticed within
//! `max(500 ms, T / 16)`. Why that is safe for a fleet of clients:
//!
//! - It is one probe per endpoint per manager, whatever the number of
//!   connections, and `own_t / n` keeps it from ever looking more often than
//!   the `n` connections' own schedules would (`own_t` is where a
//!   schedule stands after T, which the prober's own level, climbing with
//!   every probe, overstates): a lone connection (`n = 1`)
//!   keeps exactly the schedule the user configured, and so does every
//!   connection outside the probe.
//! - The rate falls as the outage goes on (one probe per T/16), so a long
//!   outage is not hammered: after a minute, one probe every 3-4 s per
//!   client. In its first seconds the probe follows the schedule's own
//!   first delays (100, 200, 400 ms by default), then never looks more
//!   often than every 400 ms (500 ms less the jitter).
//! - The jitter only shortens a delay, so the bound holds, and it spreads
//!   clients that lost the server at the same instant; when the server
//!   returns they notice at different moments over T/16 and each releases
//!   its connections through its own cap on attempts in flight.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::core::backoff::{Backoff, Rng};
use crate::endpoint::Endpoint;

/// The probe notices a return within this share of the outage so far
/// (1/16, about 6 %).
pub(crate) const PROBE_SHARE_OF_OUTAGE: u32 = 16;
/// The probe never looks more often than this for the outage's sake; the
/// user's schedule may (its first delays are 100, 200, 400 ms by default).
pub(crate) const PROBE_FLOOR: Duration = Duration::from_millis(500);
/// A probe's delay is shortened by up to this share, at random.
pub(crate) const PROBE_JITTER: f64 = 0.2;

/// The delay before the endpoint's next probe: pure, the time passed in.
///
/// `own` is the delay the prober's own schedule chose, `schedule` the
/// connections' backoff, `sharing` the connections that share the probe,
/// `down_for` how long the endpoint has been down and `unit` a random draw
/// in `0.0..1.0`. The rule and why it is safe for a fleet are in the
/// module docs.
pub(crate) fn probe_delay(
    own: Duration,
    schedule: &Backoff,
    sharing: usize,
    down_for: Duration,
    unit: f64,
) -> Duration {
    if sharing <= 1 {
        return own;
    }
    let bound = PROBE_FLOOR.max(down_for / PROBE_SHARE_OF_OUTAGE);
    let grown = schedule.initial().as_secs_f64()
        + (schedule.multiplier() - 1.0).max(0.0) * down_for.as_secs_f64();
    let own_t = Duration::try_from_secs_f64(grown)
        .unwrap_or(schedule.max())
        .min(schedule.max());
    let per_connection = own_t / u32::try_from(sharing).unwrap_or(u32::MAX);
    let fast = bound.max(per_connection);
    if fast >= own {
        own
    } else {
        fast.mul_f64(1.0 - PROBE_JITTER * unit.clamp(0.0, 1.0))
    }
}

#[derive(Default)]
struct Health {
    /// The last attempt to this endpoint failed and none succeeded since.
    down: bool,
    /// When the first failed attempt of this outage ended.
    down_since: Option<Instant>,
    /// Connections that joined the probe and have not left.
    sharing: usize,
    /// Draws the probe's jitter; seeded per manager and endpoint, so
    /// clients that lost a server together spread out.
    rng: Option<Rng>,
    /// The connection that probes while it is down (0: none).
    prober: u64,
    /// A connection to the endpoint was lost and no attempt has succeeded
    /// since: the endpoint is in doubt.
    in_doubt: bool,
    /// While in doubt, the connection whose attempt decides (0: none).
    trying: u64,
    /// Connections wait for that attempt: its verdict must wake them.
    awaiting_trial: bool,
    /// The backing-off connection due to attempt first (0: none), and when.
    scout: u64,
    scout_at: Option<Instant>,
    /// Connections wait for the scout's verdict: its success must wake them.
    awaiting_scout: bool,
}

/// What the connections to one endpoint know about it.
#[derive(Default)]
pub(crate) struct EndpointHealth {
    health: Mutex<Health>,
    /// Wakes the waiting connections: the endpoint is up, or the prober left.
    pub(crate) changed: Notify,
}

impl EndpointHealth {
    fn lock(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether connection `id` may attempt now. While the endpoint is down
    /// only the prober may, and the first to ask becomes it; while it is
    /// in doubt only the one trying it may, and the first to ask tries it.
    pub(crate) fn may_attempt(&self, id: u64) -> bool {
        let mut h = self.lock();
        if h.down {
            if h.prober == 0 {
                h.prober = id;
            }
            return h.prober == id;
        }
        if !h.in_doubt {
            return true;
        }
        if h.trying == 0 {
            h.trying = id;
        }
        let may = h.trying == id;
        h.awaiting_trial |= !may;
        may
    }

    /// Whether the endpoint is known to be down (an attempt failed and
    /// none succeeded since).
    pub(crate) fn is_down(&self) -> bool {
        self.lock().down
    }

    /// A live connection to the endpoint was lost: it is in doubt until
    /// the next attempt's verdict.
    pub(crate) fn lost(&self) {
        self.lock().in_doubt = true;
    }

    /// Connection `id` backs off until `until`. True when it should wait
    /// for [`changed`](Self::changed) rather than keep a timer: the
    /// endpoint is down and another connection probes it, or another
    /// connection will attempt no later than `until` and its verdict
    /// decides for both. A failed verdict leaves the waiters parked as
    /// probe waiters; a success, or the scout leaving, wakes them.
    pub(crate) fn wait_for_scout(&self, id: u64, until: Instant) -> bool {
        let mut h = self.lock();
        let wait = if h.down {
            h.prober != 0 && h.prober != id
        } else if h.scout != 0 && h.scout != id && h.scout_at.is_some_and(|at| at <= until) {
            true
        } else {
            h.scout = id;
            h.scout_at = Some(until);
            false
        };
        h.awaiting_scout |= wait;
        wait
    }

    /// An attempt by `id` failed at `now`.
    pub(crate) fn failed(&self, id: u64, now: Instant) {
        let wake = {
            let mut h = self.lock();
            if !h.down {
                h.down_since = Some(now);
            }
            h.down = true;
            if h.prober == 0 {
                h.prober = id;
            }
            if h.scout == id {
                h.scout = 0;
            }
            h.trying = 0;
            // Those that waited for the trial now wait for the probe, and
            // count the endpoint as unreachable: they look again.
            std::mem::take(&mut h.awaiting_trial)
        };
        if wake {
            self.changed.notify_waiters();
        }
    }

    /// An attempt succeeded: everyone may try again.
    pub(crate) fn succeeded(&self) {
        let wake = {
            let mut h = self.lock();
            let wake = h.down || h.awaiting_scout || h.awaiting_trial;
            h.down = false;
            h.down_since = None;
            h.in_doubt = false;
            h.trying = 0;
            h.awaiting_trial = false;
            h.prober = 0;
            h.scout = 0;
            h.awaiting_scout = false;
            wake
        };
        if wake {
            self.changed.notify_waiters();
        }
    }

    /// The delay before `id`'s next attempt when it is the endpoint's
    /// prober (see [`probe_delay`]); `None` when it is not, and the delay
    /// its own schedule chose, `own`, stands.
    pub(crate) fn probe_delay(
        &self,
        id: u64,
        now: Instant,
        own: Duration,
        schedule: &Backoff,
    ) -> Option<Duration> {
        let mut h = self.lock();
        if !h.down || h.prober != id {
            return None;
        }
        let down_for = h
            .down_since
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        let sharing = h.sharing;
        let unit = h.rng.get_or_insert_with(|| Rng::new(id)).unit();
        Some(probe_delay(own, schedule, sharing, down_for, unit))
    }

    /// Connection `id` closed for good: if it was the prober, another
    /// waiting connection takes over; if it was the scout, those waiting
    /// for it go back to their own schedules.
    pub(crate) fn leave(&self, id: u64) {
        let wake = {
            let mut h = self.lock();
            h.sharing = h.sharing.saturating_sub(1);
            let mut wake = false;
            if h.prober == id {
                h.prober = 0;
                wake = true;
            }
            if h.scout == id {
                h.scout = 0;
                wake |= h.awaiting_scout;
            }
            if h.trying == id {
                h.trying = 0;
                wake |= h.awaiting_trial;
            }
            if wake {
                h.awaiting_scout = false;
                h.awaiting_trial = false;
            }
            wake
        };
        if wake {
            self.changed.notify_waiters();
        }
    }
}

/// The manager's table of endpoints with connections that share a probe.
#[derive(Default)]
pub(crate) struct Probes {
    table: Mutex<Table>,
    /// Seeds each endpoint's jitter (the manager's seed).
    seed: u64,
}

#[derive(Default)]
struct Table {
    by_endpoint: HashMap<Endpoint, Arc<EndpointHealth>>,
    /// The endpoint joined last: thousands of connections made to one
    /// endpoint in a row find it without hashing it each time.
    last: Option<(Endpoint, Arc<EndpointHealth>)>,
}

impl Probes {
    /// An empty table; `seed` spreads the probes' jitter.
    pub(crate) fn new(seed: u64) -> Self {
        Probes {
            table: Mutex::default(),
            seed,
        }
    }

    /// Joins the endpoint's probe. Also returns the table's copy of the
    /// endpoint, which the connection keeps instead of its own, so the
    /// connections to one endpoint share one. A connection that joined
    /// leaves through [`EndpointHealth::leave`].
    pub(crate) fn join(&self, endpoint: Endpoint) -> (Arc<EndpointHealth>, Endpoint) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        let (health, key) = match &t.last {
            Some((key, health)) if *key == endpoint => (health.clone(), key.clone()),
            _ => {
                let n = t.by_endpoint.len() as u64;
                let (health, key) = match t.by_endpoint.entry(endpoint) {
                    Entry::Occupied(e) => (e.get().clone(), e.key().clone()),
                    Entry::Vacant(e) => {
                        let key = e.key().clone();
                        let health = EndpointHealth::default();
                        let seed = self.seed ^ n.wrapping_mul(0xA076_1D64_78BD_642F);
                        health.lock().rng = Some(Rng::new(seed));
                        (e.insert(Arc::new(health)).clone(), key)
                    }
                };
                t.last = Some((key.clone(), health.clone()));
                (health, key)
            }
        };
        health.lock().sharing += 1;
        (health, key)
    }

    /// Forgets an endpoint no connection uses any more.
    pub(crate) fn release(&self, endpoint: &Endpoint) {
        let mut t = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if t.last.as_ref().is_some_and(|(key, _)| key == endpoint) {
            t.last = None;
        }
        if t.by_endpoint
            .get(endpoint)
            .is_some_and(|h| Arc::strong_count(h) == 1)
        {
            t.by_endpoint.remove(endpoint);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_prober_while_down_and_everyone_after_success() {
        let h = EndpointHealth::default();
        assert!(h.may_attempt(1) && h.may_attempt(2), "up: everyone tries");
        let t = Instant::now();
        h.failed(1, t);
        h.failed(2, t);
        assert!(h.may_attempt(1), "the first to fail probes");
        assert!(!h.may_attempt(2) && !h.may_attempt(3));
        h.leave(1);
        assert!(
            h.may_attempt(3),
            "another takes over when the prober leaves"
        );
        assert!(!h.may_attempt(2));
        h.succeeded();
        assert!(h.may_attempt(2) && h.may_attempt(3));
    }

    #[test]
    fn the_earliest_to_back_off_scouts_for_the_others() {
        let h = EndpointHealth::default();
        let t = Instant::now();
        let ms = std::time::Duration::from_millis;
        assert!(
            !h.wait_for_scout(1, t + ms(200)),
            "the first keeps its timer"
        );
        assert!(h.wait_for_scout(2, t + ms(300)), "a later one waits");
        assert!(
            !h.wait_for_scout(3, t + ms(100)),
            "an earlier one keeps its timer and scouts"
        );
        assert!(h.wait_for_scout(4, t + ms(150)));
        h.failed(3, t);
        assert!(
            h.wait_for_scout(5, t + ms(50)),
            "down: everyone but the prober waits"
        );
        assert!(
            !h.wait_for_scout(3, t + ms(400)),
            "the prober keeps its timer"
        );
        h.succeeded();
        assert!(!h.wait_for_scout(6, t + ms(500)), "up again: a new scout");
        h.leave(6);
        assert!(
            !h.wait_for_scout(7, t + ms(600)),
            "the scout left: the next one scouts"
        );
    }

    fn ep9() -> Endpoint {
        "127.0.0.1:9".parse().expect("an endpoint")
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// Plays an outage of `len` on a fake clock: the prober's own schedule
    /// is the default backoff (seeded), `sharing` connections share the
    /// probe. Returns the probes made while the endpoint was down and how
    /// long after its return the next one came.
    fn outage(len: Duration, sharing: usize, seed: u64) -> (u32, Duration) {
        let mut own = crate::Backoff::default().delays(seed);
        let mut rng = Rng::new(seed ^ 0xFFFF);
        let (mut now, mut probes) = (Duration::ZERO, 0);
        while now < len {
            probes += 1;
            let configured = own.next().unwrap_or(crate::Backoff::DEFAULT_MAX);
            now += probe_delay(
                configured,
                &crate::Backoff::default(),
                sharing,
                now,
                rng.unit(),
            );
        }
        (probes, now - len)
    }

    #[test]
    fn a_shared_probe_notices_a_return_within_a_sixteenth_of_the_outage() {
        for len_s in [1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0] {
            let len = secs(len_s);
            let bound = PROBE_FLOOR.max(len / PROBE_SHARE_OF_OUTAGE);
            let (mut most, mut latest) = (0, Duration::ZERO);
            for seed in 0..200 {
                let (probes, late) = outage(len, 10_000, seed);
                assert!(late <= bound, "{len:?} seed {seed}: {late:?} > {bound:?}");
                most = most.max(probes);
                latest = latest.max(late);
            }
            println!("outage {len:?}: at most {most} probes, return noticed <= {latest:?} after");
            // The probe count grows with the log of the outage (the
            // targets: <= 50 in 10 s, <= 80 in 60 s).
            let limit = match len_s {
                l if l <= 10.0 => 50,
                l if l <= 60.0 => 80,
                l if l <= 300.0 => 110,
                _ => 230,
            };
            assert!(most <= limit, "{len:?}: {most} probes");
        }
    }

    #[test]
    fn a_lone_connection_keeps_its_configured_schedule() {
        for seed in 0..50 {
            let mut own = crate::Backoff::default().delays(seed);
            let mut now = Duration::ZERO;
            for _ in 0..40 {
                let configured = own.next().unwrap_or(crate::Backoff::DEFAULT_MAX);
                let b = crate::Backoff::default();
                assert_eq!(probe_delay(configured, &b, 1, now, 0.5), configured);
                now += configured;
            }
        }
        let (probes, late) = outage(secs(10.0), 1, 3);
        assert!(probes <= 8, "{probes}: doubling makes ~7 attempts in 10 s");
        assert!(late > secs(0.0));
    }

    #[test]
    fn a_probe_never_looks_more_often_than_the_sharing_schedules_would() {
        // Eight connections whose schedule starts at 10 s: the probe may
        // look eight times as often as one of them, not every 500 ms.
        let slow = crate::Backoff::new(secs(10.0), 2.0, secs(60.0)).expect("a backoff");
        for unit in [0.0, 0.5, 0.999] {
            let d = probe_delay(secs(20.0), &slow, 8, secs(1.0), unit);
            // After 1 s one schedule stands at 10 s + 1 s.
            let per = secs(11.0) / 8;
            assert!(d >= per.mul_f64(0.8) && d <= per, "{d:?}");
        }
        // Never longer than the configured delay, and the jitter only
        // shortens, by at most 20 %.
        for down in [0.0, 3.0, 20.0, 600.0] {
            for unit in [0.0, 0.3, 0.999] {
                let b = crate::Backoff::default();
                let d = probe_delay(crate::Backoff::DEFAULT_MAX, &b, 10_000, secs(down), unit);
                let bound = PROBE_FLOOR.max(secs(down) / 16);
                assert!(d <= bound && d >= bound.mul_f64(0.8), "{down}: {d:?}");
            }
        }
    }

    #[test]
    fn only_the_prober_follows_the_probe_schedule_and_only_while_down() {
        let p = Probes::new(7);
        let ep = ep9();
        let (h, _) = p.join(ep.clone());
        let (h2, _) = p.join(ep);
        assert!(Arc::ptr_eq(&h, &h2));
        let t = Instant::now();
        let own = secs(6.4);
        let b = crate::Backoff::default();
        assert_eq!(h.probe_delay(1, t, own, &b), None, "up: no probe");
        h.failed(1, t);
        h.failed(2, t + secs(1.0));
        assert_eq!(h.probe_delay(2, t + secs(1.0), own, &b), None, "2 waits");
        // Two sharing, down for 20 s: one schedule stands at ~20 s, so
        // the probe could look every 10 s; its own 6.4 s is sooner.
        let d = h
            .probe_delay(1, t + secs(20.0), own, &b)
            .expect("the prober");
        assert_eq!(d, own);
        for _ in 0..8 {
            let _ = p.join(ep9());
        }
        // Ten sharing: every 20.1 s / 10 (more than 20 s / 16).
        let d = h
            .probe_delay(1, t + secs(20.0), own, &b)
            .expect("the prober");
        assert!(d <= secs(2.01) && d >= secs(2.01 * 0.8), "{d:?}");
        h.succeeded();
        assert_eq!(h.probe_delay(1, t + secs(21.0), own, &b), None, "up again");
        h.failed(1, t + secs(30.0));
        let d = h
            .probe_delay(1, t + secs(30.0), secs(2.0), &b)
            .expect("down again");
        assert!(
            d <= PROBE_FLOOR,
            "a new outage starts from its floor: {d:?}"
        );
    }

    #[test]
    fn after_a_loss_one_attempt_decides_for_everyone() {
        let h = EndpointHealth::default();
        let t = Instant::now();
        h.lost();
        assert!(h.may_attempt(1), "the first to ask tries the endpoint");
        assert!(!h.may_attempt(2) && !h.may_attempt(3), "the others wait");
        assert!(h.may_attempt(1));
        h.failed(1, t);
        assert!(h.is_down());
        assert!(h.may_attempt(1), "the one that tried probes");
        assert!(!h.may_attempt(2));
        h.succeeded();
        assert!(h.may_attempt(2) && h.may_attempt(3), "up: everyone goes");

        h.lost();
        assert!(h.may_attempt(4));
        assert!(!h.may_attempt(5));
        h.leave(4);
        assert!(h.may_attempt(5), "the one trying left: the next one tries");
        h.succeeded();
        assert!(h.may_attempt(6) && h.may_attempt(7));
    }
}
