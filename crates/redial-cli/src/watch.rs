//! `redial watch`: a pool to every endpoint, shown as a live table on a
//! terminal or as one JSON object per state change otherwise.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use redial::{Connection, Endpoint, Event, EventKind, Manager, State};
use serde_json::{json, Value};

use crate::connect::Reconnect;
use crate::output::{colour_wanted, rfc3339, system_time_of, wall_clock, Paint};
use crate::table::{Align, Table};
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
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One event as a JSON object, keys in this order: `time`, `event`,
/// `connection`, `endpoint`, `pool`, then the fields of its kind
/// (`attempt`; `generation`, `peer`; `error`, `retry_in_ms`; `reason`,
/// `uptime_ms`, `unsent_bytes`).
///
/// ```no_run
/// # fn f(ev: &redial::Event) {
/// println!("{}", redial_cli::watch::event_json(ev));
/// # }
/// ```
pub fn event_json(ev: &Event) -> Value {
    let mut v = json!({ "time": rfc3339(system_time_of(ev.at)) });
    let (name, extra) = match &ev.kind {
        EventKind::Connecting { attempt } => ("connecting", json!({ "attempt": attempt })),
        EventKind::Connected { generation, peer } => (
            "connected",
            json!({ "generation": generation, "peer": peer.map(|p| p.to_string()) }),
        ),
        EventKind::ConnectFailed {
            attempt,
            error,
            retry_in,
            ..
        } => (
            "connect_failed",
            json!({ "attempt": attempt, "error": error, "retry_in_ms": retry_in.map(ms) }),
        ),
        EventKind::Reset {
            reason,
            uptime,
            unsent_bytes,
        } => (
            "reset",
            json!({
                "reason": reason.to_string(),
                "uptime_ms": ms(*uptime),
                "unsent_bytes": unsent_bytes,
            }),
        ),
        EventKind::Closed {
            reason,
            unsent_bytes,
        } => (
            "closed",
            json!({ "reason": reason.to_string(), "unsent_bytes": unsent_bytes }),
        ),
        _ => ("other", json!({ "debug": format!("{:?}", ev.kind) })),
    };
    if let (Value::Object(map), Value::Object(more)) = (&mut v, extra) {
        map.insert("event".into(), Value::String(name.into()));
        map.insert("connection".into(), ev.connection.into());
        map.insert("endpoint".into(), ev.endpoint.to_string().into());
        map.insert("pool".into(), ev.pool.as_deref().into());
        map.extend(more);
    }
    v
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
    terminal_size::terminal_size()
        .map(|(w, h)| (usize::from(w.0), usize::from(h.0)))
        .unwrap_or((120, 40))
}

/// Draws the table in place: moves up over the previous drawing first.
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
        let mut frame = String::new();
        if self.lines > 0 {
            frame.push_str(&format!("\x1b[{}A\r", self.lines));
        }
        let count = text.lines().count();
        for line in text.lines() {
            frame.push_str(line);
            frame.push_str("\x1b[K\n");
        }
        let extra = self.lines.saturating_sub(count);
        if extra > 0 {
            frame.push_str(&"\x1b[K\n".repeat(extra));
            frame.push_str(&format!("\x1b[{extra}A"));
        }
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(frame.as_bytes());
        let _ = out.flush();
        self.lines = count;
    }
}

fn print_json(ev: &Event) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", event_json(ev));
    let _ = out.flush();
}

/// Keeps the connections until Ctrl-C or SIGTERM, then disconnects them all.
///
/// # Errors
///
/// When the options are invalid or a connection cannot be made.
pub async fn run(config: WatchConfig) -> anyhow::Result<()> {
    let json_mode = config.json || !std::io::stdout().is_terminal();
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
    let _ = write!(out, "\x1b[?25l");
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
    let _ = write!(out, "\x1b[?25h");
    let _ = out.flush();
    Ok(())
}
