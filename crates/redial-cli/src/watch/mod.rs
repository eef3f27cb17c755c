//! `redial watch`: a pool to every endpoint, and one that follows each
//! `--follow` name (members added and drained as the name changes), shown
//! as a live table on a terminal or as one JSON object per state change
//! otherwise.

pub mod prometheus;

use std::collections::{HashSet, VecDeque};
use std::io::{IsTerminal, Write};
use std::time::Duration;

use crossterm::cursor::{Hide, MoveToPreviousLine, MoveUp, Show};
use crossterm::style::Print;
use crossterm::terminal::{Clear, ClearType};
use crossterm::{execute, queue};
use redial::{Connection, Endpoint, Event, EventKind, Follow, Manager, Pool, State};
use serde::Serialize;

use crate::connect::Reconnect;
use crate::output::table::{Align, Table};
use crate::output::{colour_wanted, rfc3339, system_time_of, wall_clock, Paint};
use crate::units::{format_duration, format_size};

/// What `redial watch` does.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Endpoints to keep connections to.
    pub endpoints: Vec<Endpoint>,
    /// Names to follow (`host:port`): one pool each, with `per_endpoint`
    /// members per address the name resolves to.
    pub follow: Vec<String>,
    /// How often a followed name is resolved again.
    pub resolve_every: Duration,
    /// Replace each connection after it has been up this long
    /// ([`redial::Options::max_lifetime`]).
    pub max_lifetime: Option<Duration>,
    /// Connections per endpoint (per address of a followed name).
    pub per_endpoint: usize,
    /// JSON lines even on a terminal.
    pub json: bool,
    /// Backoff and timeouts.
    pub reconnect: Reconnect,
    /// Time between two redraws of the table.
    pub refresh: Duration,
    /// Where to answer Prometheus scrapes (`--metrics`).
    pub metrics: Option<std::net::SocketAddr>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One line of `redial watch --json`: one state change of one connection.
///
/// Keys, in this order: `time` (RFC 3339, UTC, milliseconds), `event`,
/// `connection` (its id), `endpoint`, `pool` (or `null`), then the fields
/// of the event (see [`EventDetail`] and [`EVENT_FIELDS`]).
///
/// ```no_run
/// # fn f(ev: &redial::Event) {
/// let line = redial_cli::watch::WatchEvent::from(ev);
/// println!("{}", serde_json::to_string(&line).unwrap());
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WatchEvent {
    /// When it happened, as `2025-01-31T14:03:27.512Z`.
    pub time: String,
    /// Which change: `connecting`, `connected`, `connect_failed`, `reset`,
    /// `closed`, `recycled`; for a followed name `member_added`,
    /// `member_draining`, `resolve_failed` (or `other` for a kind this
    /// version does not know).
    pub event: &'static str,
    /// The connection's id.
    pub connection: u64,
    /// The endpoint, as given.
    pub endpoint: String,
    /// The pool the connection belongs to.
    pub pool: Option<String>,
    /// The fields of this kind of event.
    #[serde(flatten)]
    pub detail: EventDetail,
}

/// The fields each kind of event adds to a [`WatchEvent`].
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum EventDetail {
    /// `connecting`: attempt number (1 for the first of a series).
    Connecting {
        /// Attempt number.
        attempt: u32,
    },
    /// `connected`: which connection of this handle it is, and the peer.
    Connected {
        /// 1 for the first connection, 2 after the first reconnect, ...
        generation: u64,
        /// The peer's address (`null` for a Unix socket).
        peer: Option<String>,
    },
    /// `connect_failed`: the attempt, why, and when the next one is.
    ConnectFailed {
        /// Attempt number.
        attempt: u32,
        /// Why it failed.
        error: String,
        /// Milliseconds until the next attempt (`null`: no more attempts).
        retry_in_ms: Option<u64>,
    },
    /// `reset`: a connection was lost.
    Reset {
        /// Why.
        reason: String,
        /// How long it had been up, in milliseconds.
        uptime_ms: u64,
        /// Bytes queued but never written to the kernel.
        unsent_bytes: usize,
    },
    /// `closed`: the connection will not come back.
    Closed {
        /// Why.
        reason: String,
        /// Bytes queued but never written to the kernel.
        unsent_bytes: usize,
    },
    /// `recycled`: the connection outlived its `max_lifetime` and was
    /// replaced, the new socket made first (`connected` follows).
    Recycled {
        /// Which connection of this handle was replaced.
        generation: u64,
        /// How long it had been up, in milliseconds.
        uptime_ms: u64,
    },
    /// `member_added` or `member_draining`: a followed name gained this
    /// address (the connection is its new member) or lost it (the member
    /// flushes what is queued, then closes).
    Member {
        /// The address, as `ip:port`.
        address: String,
    },
    /// `resolve_failed`: a followed name could not be resolved; the
    /// members stay (`connection` is 0).
    ResolveFailed {
        /// Why.
        error: String,
        /// Addresses kept from the last lookup that succeeded.
        kept: usize,
    },
    /// `other`: a kind this version does not know, as debug text.
    Other {
        /// The event's debug form.
        debug: String,
    },
}

/// Every key of a [`WatchEvent`] line: the common ones, then those of each
/// `event` (the documented schema, checked against real runs in tests).
pub const EVENT_FIELDS: &[(&str, &[&str])] = &[
    ("*", &["time", "event", "connection", "endpoint", "pool"]),
    ("connecting", &["attempt"]),
    ("connected", &["generation", "peer"]),
    ("connect_failed", &["attempt", "error", "retry_in_ms"]),
    ("reset", &["reason", "uptime_ms", "unsent_bytes"]),
    ("closed", &["reason", "unsent_bytes"]),
    ("recycled", &["generation", "uptime_ms"]),
    ("member_added", &["address"]),
    ("member_draining", &["address"]),
    ("resolve_failed", &["error", "kept"]),
    ("other", &["debug"]),
];

impl From<&Event> for WatchEvent {
    fn from(ev: &Event) -> Self {
        let (event, detail) = detail_of(&ev.kind);
        WatchEvent {
            time: rfc3339(system_time_of(ev.at)),
            event,
            connection: ev.connection,
            endpoint: ev.endpoint.to_string(),
            pool: ev.pool.as_deref().map(str::to_string),
            detail,
        }
    }
}

/// An event's name in the output, and its fields: those of one
/// connection's life here, a pool's membership in [`member_detail_of`].
fn detail_of(kind: &EventKind) -> (&'static str, EventDetail) {
    match kind {
        EventKind::Connecting { attempt } => {
            ("connecting", EventDetail::Connecting { attempt: *attempt })
        }
        EventKind::Connected { generation, peer } => (
            "connected",
            EventDetail::Connected {
                generation: *generation,
                peer: peer.map(|p| p.to_string()),
            },
        ),
        EventKind::ConnectFailed {
            attempt,
            error,
            retry_in,
            ..
        } => (
            "connect_failed",
            EventDetail::ConnectFailed {
                attempt: *attempt,
                error: error.clone(),
                retry_in_ms: retry_in.map(ms),
            },
        ),
        EventKind::Reset {
            reason,
            uptime,
            unsent_bytes,
        } => (
            "reset",
            EventDetail::Reset {
                reason: reason.to_string(),
                uptime_ms: ms(*uptime),
                unsent_bytes: *unsent_bytes,
            },
        ),
        EventKind::Closed {
            reason,
            unsent_bytes,
        } => (
            "closed",
            EventDetail::Closed {
                reason: reason.to_string(),
                unsent_bytes: *unsent_bytes,
            },
        ),
        EventKind::Recycled { generation, uptime } => (
            "recycled",
            EventDetail::Recycled {
                generation: *generation,
                uptime_ms: ms(*uptime),
            },
        ),
        other => member_detail_of(other),
    }
}

/// The name and fields of a following pool's membership events, and of
/// any event this version does not know.
fn member_detail_of(kind: &EventKind) -> (&'static str, EventDetail) {
    match kind {
        EventKind::MemberAdded { address } => (
            "member_added",
            EventDetail::Member {
                address: address.to_string(),
            },
        ),
        EventKind::MemberDraining { address } => (
            "member_draining",
            EventDetail::Member {
                address: address.to_string(),
            },
        ),
        EventKind::ResolveFailed { error, kept } => (
            "resolve_failed",
            EventDetail::ResolveFailed {
                error: error.clone(),
                kept: *kept,
            },
        ),
        other => (
            "other",
            EventDetail::Other {
                debug: format!("{other:?}"),
            },
        ),
    }
}

fn paint_state(paint: Paint, state: State, draining: bool) -> String {
    if draining && state != State::Closed {
        return paint.yellow("draining");
    }
    let s = state.to_string();
    match state {
        State::Connected => paint.green(&s),
        State::Closed => paint.red(&s),
        _ => paint.yellow(&s),
    }
}

/// The table of every connection, `width` columns wide at most. A
/// connection whose id is in `draining` (a followed name lost its address)
/// shows as `draining` until it closes.
pub fn render_table(
    conns: &[Connection],
    draining: &HashSet<u64>,
    paint: Paint,
    width: usize,
) -> String {
    let mut t = Table::new(&[
        ("endpoint", Align::Left),
        ("conn", Align::Right),
        ("state", Align::Left),
        ("uptime", Align::Right),
        ("resets", Align::Right),
        ("failed", Align::Right),
        ("bytes in", Align::Right),
        ("bytes out", Align::Right),
        ("last error", Align::Left),
    ])
    .max_width(width);
    for c in conns {
        let s = c.stats();
        t.row(vec![
            c.endpoint().to_string(),
            format!("#{}", c.id()),
            paint_state(paint, c.state(), draining.contains(&c.id())),
            s.uptime.map(format_duration).unwrap_or_else(|| "-".into()),
            s.resets.to_string(),
            s.failed_attempts.to_string(),
            format_size(s.bytes_in),
            format_size(s.bytes_out),
            s.last_error.unwrap_or_else(|| "-".into()),
        ]);
    }
    t.render()
}

/// One event as a line under the table: the time of day, the event's name
/// and its fields as `key=value`, as in the JSON lines.
///
/// ```
/// use redial_cli::watch::{event_line, EventDetail, WatchEvent};
/// let ev = WatchEvent {
///     time: "2025-01-31T14:03:27.512Z".into(),
///     event: "member_added",
///     connection: 3,
///     endpoint: "10.0.0.7:11211".into(),
///     pool: Some("cache.svc:11211".into()),
///     detail: EventDetail::Member { address: "10.0.0.7:11211".into() },
/// };
/// assert_eq!(event_line(&ev), "14:03:27.512  member_added  #3  address=10.0.0.7:11211");
/// ```
pub fn event_line(ev: &WatchEvent) -> String {
    let time = ev
        .time
        .split_once('T')
        .map_or(ev.time.as_str(), |(_, t)| t.trim_end_matches('Z'));
    let mut line = format!("{time}  {}  #{}", ev.event, ev.connection);
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&ev.detail) {
        for (k, v) in fields {
            match v {
                serde_json::Value::String(s) => line.push_str(&format!("  {k}={s}")),
                v => line.push_str(&format!("  {k}={v}")),
            }
        }
    }
    line
}

/// How many membership (and recycling) events the table keeps under it.
const RECENT_EVENTS: usize = 6;

/// What the table shows besides the connections: the pools that follow a
/// name (whose members come and go), the members being drained, and the
/// last membership events.
#[derive(Default)]
struct Fleet {
    following: Vec<Pool>,
    draining: HashSet<u64>,
    recent: VecDeque<String>,
}

impl Fleet {
    /// Notes a membership event; other kinds show in the table itself.
    fn saw(&mut self, ev: &Event) {
        match ev.kind {
            EventKind::MemberDraining { .. } => {
                self.draining.insert(ev.connection);
            }
            EventKind::MemberAdded { .. }
            | EventKind::ResolveFailed { .. }
            | EventKind::Recycled { .. } => {}
            EventKind::Closed { .. } => {
                self.draining.remove(&ev.connection);
                return;
            }
            _ => return,
        }
        if self.recent.len() == RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(event_line(&WatchEvent::from(ev)));
    }

    /// The fixed connections, then the live members of every followed name.
    fn connections(&self, fixed: &[Connection]) -> Vec<Connection> {
        let mut all = fixed.to_vec();
        for p in &self.following {
            all.extend(p.connections());
        }
        all
    }
}

fn terminal_size() -> (usize, usize) {
    crossterm::terminal::size()
        .map(|(w, h)| (usize::from(w), usize::from(h)))
        .unwrap_or((120, 40))
}

/// A count of terminal rows for a cursor move (a terminal has far fewer
/// than `u16::MAX`).
fn rows(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// Draws the table in place: moves up over the previous drawing first.
/// Cursor moves and erasing come from `crossterm`; a full-screen UI
/// (`ratatui`, alternate screen) would hide the table when the command
/// stops, and one redrawn table needs no panes or layout.
struct Screen {
    lines: usize,
    paint: Paint,
}

impl Screen {
    fn draw(&mut self, conns: &[Connection], fleet: &Fleet, footer: &str, hint: &str) {
        let (width, height) = terminal_size();
        let up = conns
            .iter()
            .filter(|c| c.state() == State::Connected)
            .count();
        let mut text = format!(
            "{}  {}  {} connections, {} up  {hint}\n",
            self.paint.bold("redial watch"),
            wall_clock(),
            conns.len(),
            up
        );
        let room = height
            .saturating_sub(4 + fleet.recent.len() + usize::from(!fleet.recent.is_empty()))
            .max(1);
        let shown = &conns[..conns.len().min(room)];
        text.push_str(&render_table(
            shown,
            &fleet.draining,
            self.paint,
            width.saturating_sub(1),
        ));
        if shown.len() < conns.len() {
            text.push_str(&format!("... {} more\n", conns.len() - shown.len()));
        }
        if !fleet.recent.is_empty() {
            text.push_str(&self.paint.bold("recent fleet events"));
            text.push('\n');
            for line in &fleet.recent {
                let cut: String = line.chars().take(width.saturating_sub(1)).collect();
                text.push_str(&cut);
                text.push('\n');
            }
        }
        text.push_str(footer);
        // Up over the last drawing, then overwrite line by line, erasing
        // each line's rest and any lines left over. No clear-screen: it
        // would push the old drawing into a terminal's scrollback.
        let mut frame: Vec<u8> = Vec::new();
        if self.lines > 0 {
            let _ = queue!(frame, MoveToPreviousLine(rows(self.lines)));
        }
        let count = text.lines().count();
        for line in text.lines() {
            let _ = queue!(
                frame,
                Print(line),
                Clear(ClearType::UntilNewLine),
                Print("\n")
            );
        }
        let extra = self.lines.saturating_sub(count);
        if extra > 0 {
            for _ in 0..extra {
                let _ = queue!(frame, Clear(ClearType::UntilNewLine), Print("\n"));
            }
            let _ = queue!(frame, MoveUp(rows(extra)));
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&frame);
        let _ = out.flush();
        self.lines = count;
    }
}

fn print_json(ev: &Event) {
    let mut out = std::io::stdout().lock();
    // Serialising these types cannot fail; a closed stdout is not worth
    // failing for.
    if serde_json::to_writer(&mut out, &WatchEvent::from(ev)).is_ok() {
        let _ = writeln!(out);
    }
    let _ = out.flush();
}

/// A pool named after `base`, or `base#2`, `base#3`... when that is taken
/// (the same endpoint given twice).
fn pool_name(cm: &Manager, base: &str) -> String {
    let mut name = base.to_string();
    let mut n = 1;
    while cm.get_pool(&name).is_some() {
        n += 1;
        name = format!("{base}#{n}");
    }
    name
}

/// Makes the pools: one per endpoint with its fixed connections (returned),
/// and one per followed name (in `fleet`).
fn start(
    cm: &Manager,
    config: &WatchConfig,
    opts: &redial::Options,
    fleet: &mut Fleet,
) -> anyhow::Result<Vec<Connection>> {
    let mut conns = Vec::new();
    for ep in &config.endpoints {
        let pool = cm.create_pool(&pool_name(cm, &ep.to_string()))?;
        for _ in 0..config.per_endpoint {
            let handler = redial::handler().on_data(|_, _| {});
            conns.push(
                pool.add_connection_with(ep.clone(), handler, opts.clone())
                    .map_err(crate::start_error)?,
            );
        }
    }
    for name in &config.follow {
        let follow = Follow::new(name)
            .per_address(config.per_endpoint)
            .every(config.resolve_every)
            .options(opts.clone());
        let pool = cm
            .create_pool_following(&pool_name(cm, name), follow, |_addr| {
                redial::handler().on_data(|_, _| {})
            })
            .map_err(|e| match e {
                redial::PoolError::CannotFollow { .. } => {
                    anyhow::Error::from(crate::UsageError(format!("--follow {e}")))
                }
                other => other.into(),
            })?;
        fleet.following.push(pool);
    }
    Ok(conns)
}

/// Keeps the connections until Ctrl-C or SIGTERM, then disconnects them all.
///
/// # Errors
///
/// When the options are invalid or a connection cannot be made.
pub async fn run(config: WatchConfig) -> anyhow::Result<()> {
    let json_mode = config.json || !std::io::stdout().is_terminal();
    if let Some(addr) = config.metrics {
        // Before any connection: each takes its metric handles when made.
        let addr = prometheus::serve(addr).await?;
        eprintln!("metrics: http://{addr}/metrics");
    }
    let cm = Manager::new();
    let mut events = cm.events();
    let mut opts = config
        .reconnect
        .options()?
        .close_grace(Duration::from_secs(1));
    if let Some(d) = config.max_lifetime {
        if d.is_zero() {
            return Err(crate::UsageError("--max-lifetime: must be above zero".into()).into());
        }
        opts = opts.max_lifetime(d);
    }
    let mut fleet = Fleet::default();
    let conns = start(&cm, &config, &opts, &mut fleet)?;

    if json_mode {
        let stop = crate::stop::requested();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                ev = events.recv() => match ev {
                    Some(ev) => print_json(&ev),
                    None => break,
                },
                _ = &mut stop => break,
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(3), cm.disconnect_all()).await;
        while let Some(ev) = events.try_recv() {
            print_json(&ev);
        }
        return Ok(());
    }

    let mut screen = Screen {
        lines: 0,
        paint: Paint::new(colour_wanted(&std::io::stdout())),
    };
    let mut out = std::io::stdout().lock();
    let _ = execute!(out, Hide);
    drop(out);
    let stop = crate::stop::requested();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(config.refresh);
    loop {
        tokio::select! {
            _ = tick.tick() => screen.draw(&fleet.connections(&conns), &fleet, "", "(Ctrl-C to stop)"),
            ev = events.recv() => match ev {
                Some(ev) => fleet.saw(&ev),
                None => break,
            },
            _ = &mut stop => break,
        }
    }
    // The members of followed names as they were: the disconnect removes
    // them from their pools.
    let shown = fleet.connections(&conns);
    screen.draw(&shown, &fleet, "disconnecting...\n", "(stopping)");
    let _ = tokio::time::timeout(Duration::from_secs(3), cm.disconnect_all()).await;
    screen.draw(&shown, &fleet, "disconnected.\n", "(stopped)");
    let mut out = std::io::stdout().lock();
    let _ = execute!(out, Show);
    Ok(())
}
