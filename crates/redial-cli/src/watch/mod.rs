//! `redial watch`: a pool to every endpoint, shown as a live table on a
//! terminal or as one JSON object per state change otherwise.

pub mod prometheus;

use std::io::{IsTerminal, Write};
use std::time::Duration;

use crossterm::cursor::{Hide, MoveToPreviousLine, MoveUp, Show};
use crossterm::style::Print;
use crossterm::terminal::{Clear, ClearType};
use crossterm::{execute, queue};
use redial::{Connection, Endpoint, Event, EventKind, Manager, State};
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
    /// Connections per endpoint.
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
    /// `closed` (or `other` for a kind this version does not know).
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
    ("other", &["debug"]),
];

impl From<&Event> for WatchEvent {
    fn from(ev: &Event) -> Self {
        let (event, detail) = match &ev.kind {
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
            other => (
                "other",
                EventDetail::Other {
                    debug: format!("{other:?}"),
                },
            ),
        };
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

fn paint_state(paint: Paint, state: State) -> String {
    let s = state.to_string();
    match state {
        State::Connected => paint.green(&s),
        State::Closed => paint.red(&s),
        _ => paint.yellow(&s),
    }
}

/// The table of every connection, `width` columns wide at most.
pub fn render_table(conns: &[Connection], paint: Paint, width: usize) -> String {
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
            paint_state(paint, c.state()),
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
    fn draw(&mut self, conns: &[Connection], footer: &str, hint: &str) {
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
        let room = height.saturating_sub(4).max(1);
        let shown = &conns[..conns.len().min(room)];
        text.push_str(&render_table(shown, self.paint, width.saturating_sub(1)));
        if shown.len() < conns.len() {
            text.push_str(&format!("... {} more\n", conns.len() - shown.len()));
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
    let opts = config
        .reconnect
        .options()?
        .close_grace(Duration::from_secs(1));
    let mut conns = Vec::new();
    for ep in &config.endpoints {
        let base = ep.to_string();
        let mut name = base.clone();
        let mut n = 1;
        let pool = loop {
            match cm.create_pool(&name) {
                Ok(p) => break p,
                Err(_) => {
                    n += 1;
                    name = format!("{base}#{n}");
                }
            }
        };
        for _ in 0..config.per_endpoint {
            let handler = redial::handler().on_data(|_, _| {});
            conns.push(
                pool.add_connection_with(ep.clone(), handler, opts.clone())
                    .map_err(crate::start_error)?,
            );
        }
    }

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

    drop(events);
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
            _ = tick.tick() => screen.draw(&conns, "", "(Ctrl-C to stop)"),
            _ = &mut stop => break,
        }
    }
    screen.draw(&conns, "disconnecting...\n", "(stopping)");
    let _ = tokio::time::timeout(Duration::from_secs(3), cm.disconnect_all()).await;
    screen.draw(&conns, "disconnected.\n", "(stopped)");
    let mut out = std::io::stdout().lock();
    let _ = execute!(out, Show);
    Ok(())
}
