//! `redial connect`: a reconnecting netcat. Stdin goes to the socket, the
//! socket goes to stdout, state changes go to stderr with timestamps.
//!
//! During an outage stdin data is rejected and reported, or with a buffer
//! kept (`Outage::Buffer`) and sent after the reconnect, together with what
//! the lost connection never handed to the kernel. On stdin EOF the queue
//! is flushed, FIN is sent, and `run` returns.

pub mod ledger;

use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use redial::{
    Backoff, Close, CloseReason, Connection, Endpoint, Handler, Manager, Options, Outage, Reset,
    Resume, SendError, Socket, State,
};
use tokio::io::AsyncReadExt;

use crate::connect::ledger::Ledger;
use crate::output::{stamped, Paint};
use crate::units::{format_duration, format_size};
use crate::UsageError;

/// Backoff and timeouts, shared with `watch`.
#[derive(Debug, Clone)]
pub struct Reconnect {
    /// First delay after a failure.
    pub backoff_initial: Duration,
    /// Largest delay.
    pub backoff_max: Duration,
    /// Factor between two delays.
    pub backoff_factor: f64,
    /// Limit of one connect attempt.
    pub connect_timeout: Duration,
    /// Loss when nothing was read this long.
    pub idle_timeout: Option<Duration>,
}

impl Reconnect {
    /// These settings as connection [`Options`], checked as the library
    /// checks them when a connection starts, so that the binary can refuse
    /// them before anything starts.
    ///
    /// # Errors
    ///
    /// A [`UsageError`] naming the flag: a backoff factor below 1 or not a
    /// number, a zero connect or idle timeout.
    ///
    /// ```
    /// use redial_cli::connect::Reconnect;
    /// use std::time::Duration;
    ///
    /// let r = Reconnect {
    ///     backoff_initial: Duration::from_millis(100),
    ///     backoff_max: Duration::from_secs(30),
    ///     backoff_factor: 0.5,
    ///     connect_timeout: Duration::from_secs(10),
    ///     idle_timeout: None,
    /// };
    /// assert!(r.options().unwrap_err().to_string().contains("--backoff-factor 0.5"));
    /// ```
    pub fn options(&self) -> Result<Options, UsageError> {
        let backoff = Backoff::new(self.backoff_initial, self.backoff_factor, self.backoff_max)
            .map_err(|e| {
                UsageError(format!(
                    "--backoff {}..{} with --backoff-factor {}: {e}",
                    format_duration(self.backoff_initial),
                    format_duration(self.backoff_max),
                    self.backoff_factor
                ))
            })?;
        if self.connect_timeout.is_zero() {
            return Err(UsageError("--connect-timeout: must be above zero".into()));
        }
        if self.idle_timeout == Some(Duration::ZERO) {
            return Err(UsageError(
                "--idle-timeout: must be above zero (leave the flag out to turn it off)".into(),
            ));
        }
        Ok(Options::new()
            .backoff(backoff)
            .connect_timeout(self.connect_timeout)
            .idle_timeout(self.idle_timeout))
    }
}

/// What `redial connect` does.
#[derive(Debug, Clone)]
pub struct ConnectConfig {
    /// Where to connect.
    pub endpoint: Endpoint,
    /// Outage buffer size; `None` rejects input while down.
    pub buffer: Option<usize>,
    /// Give up after this many failed attempts in a row.
    pub max_attempts: Option<u32>,
    /// Give up after failing this long.
    pub give_up_after: Option<Duration>,
    /// Backoff and timeouts.
    pub reconnect: Reconnect,
}

impl ConnectConfig {
    /// The connection options these settings make.
    ///
    /// # Errors
    ///
    /// As [`Reconnect::options`].
    pub fn options(&self) -> Result<Options, UsageError> {
        let mut opts = self.reconnect.options()?;
        if let Some(n) = self.max_attempts {
            opts = opts.max_attempts(n);
        }
        if let Some(d) = self.give_up_after {
            opts = opts.give_up_after(d);
        }
        if let Some(max_bytes) = self.buffer {
            opts = opts.outage(Outage::Buffer { max_bytes });
        }
        Ok(opts)
    }
}

/// The netcat's handler: data to stdout, state to stderr, the input's
/// account in the shared [`Ledger`].
struct Netcat {
    endpoint: Endpoint,
    paint: Paint,
    resend: bool,
    max_attempts: Option<u32>,
    down_since: Option<Instant>,
    /// The error of the last failed attempt, to tell a new one.
    last_failure: Option<String>,
    ledger: Arc<Mutex<Ledger>>,
}

fn lock(l: &Mutex<Ledger>) -> MutexGuard<'_, Ledger> {
    l.lock().unwrap_or_else(|p| p.into_inner())
}

impl Netcat {
    fn say(&self, msg: &str) {
        stamped(self.paint, msg);
    }

    fn connected(&mut self, sock: &Socket) {
        self.last_failure = None;
        let peer = sock
            .peer_addr()
            .map(|p| format!(" ({p})"))
            .unwrap_or_default();
        let after = self
            .down_since
            .take()
            .map(|t| format!(" after {} down", format_duration(t.elapsed())))
            .unwrap_or_default();
        self.say(
            &self
                .paint
                .green(&format!("connected to {}{peer}{after}", self.endpoint)),
        );
    }
}

impl Handler for Netcat {
    fn on_connect(&mut self, sock: &Socket) {
        self.connected(sock);
    }

    fn on_data(&mut self, _sock: &Socket, data: &[u8]) {
        let mut out = std::io::stdout().lock();
        // A closed stdout is the reader's business; keep the connection.
        let _ = out.write_all(data).and_then(|()| out.flush());
    }

    fn on_reset(&mut self, reset: &Reset) -> Resume {
        self.down_since = Some(Instant::now());
        let unsent = reset.unsent();
        let cut = unsent.partial();
        // The cut chunk's written prefix is in `written`; its tail and the
        // whole chunks never reached the kernel.
        let mut again = cut
            .map(|p| p.data[p.written..].to_vec())
            .unwrap_or_default();
        again.extend_from_slice(unsent.bytes());
        let pending = again.len();
        let mut ledger = lock(&self.ledger);
        ledger.lost(reset.written(), reset.acked());
        let what = if pending == 0 {
            String::new()
        } else if self.resend {
            ledger.keep_for_resend(&again);
            format!("; {pending} unsent bytes will go out after the reconnect")
        } else {
            ledger.dropped_while_down(pending);
            format!("; {pending} unsent bytes dropped (use --buffer to keep them)")
        };
        drop(ledger);
        let written = reset.written();
        let arrived = match reset.acked() {
            Some(acked) => format!(
                "{written} bytes written on it, {acked} acknowledged by the peer, {} lost in flight",
                written.saturating_sub(acked)
            ),
            None => format!("{written} bytes written on it may not have arrived"),
        };
        self.say(&self.paint.red(&format!(
            "connection lost: {} after {} up; {arrived}{what}",
            reset.reason(),
            format_duration(reset.uptime()),
        )));
        if !self.resend || pending == 0 {
            return Resume::Reconnect;
        }
        // The bytes wait in the ledger, not in this closure: should the
        // connection give up first, `on_close` counts them as never sent.
        let paint = self.paint;
        let endpoint = self.endpoint.clone();
        let ledger = self.ledger.clone();
        let down = Instant::now();
        Resume::with(move |sock: &Socket| {
            let again = lock(&ledger).take_resend();
            let peer = sock
                .peer_addr()
                .map(|p| format!(" ({p})"))
                .unwrap_or_default();
            stamped(
                paint,
                &paint.green(&format!(
                    "connected to {endpoint}{peer} after {} down; resending {} bytes",
                    format_duration(down.elapsed()),
                    again.len()
                )),
            );
            if again.is_empty() {
                return;
            }
            if let Err(e) = sock.send(again) {
                lock(&ledger).never_sent(e.data().len());
                stamped(
                    paint,
                    &paint.red(&format!(
                        "could not resend: {e}; {} bytes never sent",
                        e.data().len()
                    )),
                );
            }
        })
    }

    fn on_connect_failed(&mut self, err: &std::io::Error, attempt: u32) -> redial::Retry {
        self.down_since.get_or_insert_with(Instant::now);
        let error = err.to_string();
        let changed = self.last_failure.as_deref() != Some(error.as_str());
        self.last_failure = Some(error);
        // Attempts 1, 2, 4, 8, ... (and the last allowed one, and any new
        // error): a long outage says so without flooding the terminal.
        let last = self.max_attempts == Some(attempt);
        if !(changed || attempt.is_power_of_two() || last) {
            return redial::Retry::OnSchedule;
        }
        let of = self
            .max_attempts
            .map(|n| format!(" of {n}"))
            .unwrap_or_default();
        self.say(&self.paint.yellow(&format!(
            "attempt {attempt}{of} to connect to {} failed: {err}",
            self.endpoint
        )));
        redial::Retry::OnSchedule
    }

    fn on_close(&mut self, close: &Close) {
        let unsent = close.unsent();
        let handed_back = unsent.len() + unsent.partial().map_or(0, |p| p.data.len() - p.written);
        // Handed back now, plus a re-send kept for a connection that never
        // came.
        let n = lock(&self.ledger).close(handed_back);
        let lost = if n > 0 {
            format!("; {n} bytes were never sent")
        } else {
            String::new()
        };
        let line = format!("closed: {}{lost}", close.reason());
        if *close.reason() == CloseReason::Disconnected && n == 0 {
            self.say(&line);
        } else {
            self.say(&self.paint.red(&line));
        }
    }
}

/// Waits until the connection is up, or has connected more than `seen`
/// times in all: unlike `wait_connected` alone, a connection that came and
/// went before this task looked still counts; and one that came up before
/// `seen` was read does not leave it waiting for another.
async fn connect_after(conn: &Connection, seen: u64) -> Result<(), CloseReason> {
    loop {
        if conn.stats().connects > seen || conn.state() == State::Connected {
            return Ok(());
        }
        tokio::select! {
            r = conn.wait_connected() => {
                if r.is_err() {
                    return Err(conn.closed().await);
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}

/// Runs the netcat until stdin ends (`Ok`) or the connection gives up
/// (`Err` naming the reason). When a connection was lost or input was not
/// sent, a last line on stderr accounts for every byte read from stdin.
///
/// # Errors
///
/// When the connection closes for good before stdin ends (gave up), when
/// stdin cannot be read, or when bytes could not be delivered at the end.
pub async fn run(config: ConnectConfig, paint: Paint) -> anyhow::Result<()> {
    let opts = config.options()?;
    let cm = Manager::new();
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let handler = Netcat {
        endpoint: config.endpoint.clone(),
        paint,
        resend: config.buffer.is_some(),
        max_attempts: config.max_attempts,
        down_since: None,
        last_failure: None,
        ledger: ledger.clone(),
    };
    stamped(paint, &format!("connecting to {}", config.endpoint));
    let conn = cm
        .connect_with(config.endpoint.clone(), handler, opts)
        .map_err(crate::start_error)?;
    let result = forward_stdin(&config, &conn, &ledger, paint).await;
    // Flushes what is queued, then FIN; `on_close` settles the ledger.
    conn.disconnect().await;
    let ledger = lock(&ledger).clone();
    let bytes_out = conn.stats().bytes_out;
    if ledger.never_sent_total() > 0
        || ledger.written_on_lost() > 0
        || ledger.unbalanced(bytes_out) != 0
    {
        stamped(paint, &ledger.summary(bytes_out));
    }
    result?;
    let never_sent = ledger.never_sent_total();
    if never_sent > 0 {
        bail!(
            "{never_sent} bytes of input could not be sent to {}",
            config.endpoint
        );
    }
    Ok(())
}

/// Stdin to the connection until stdin ends, Ctrl-C, or the connection
/// gives up.
async fn forward_stdin(
    config: &ConnectConfig,
    conn: &Connection,
    ledger: &Mutex<Ledger>,
    paint: Paint,
) -> anyhow::Result<()> {
    let gave_up = |reason: CloseReason| anyhow!("connection to {}: {reason}", config.endpoint);
    let stop = crate::stop::requested();
    tokio::pin!(stop);
    if config.buffer.is_none() {
        // Without a buffer, input typed before the first connect would be
        // refused: wait for it.
        tokio::select! {
            r = connect_after(conn, 0) => r.map_err(gave_up)?,
            _ = &mut stop => return Ok(()),
        }
    }

    let mut stdin = tokio::io::stdin();
    let mut buf = vec![0u8; 16 * 1024];
    let mut interrupted = false;
    loop {
        let n = tokio::select! {
            r = stdin.read(&mut buf) => r.map_err(|e| anyhow!("cannot read stdin: {e}"))?,
            reason = conn.closed() => return Err(gave_up(reason)),
            _ = &mut stop => {
                interrupted = true;
                break;
            }
        };
        if n == 0 {
            break;
        }
        lock(ledger).read(n);
        let data = &buf[..n];
        loop {
            match conn.write(data).await {
                Ok(()) => break,
                Err(SendError::NotConnected { .. }) => {
                    lock(ledger).dropped_while_down(n);
                    stamped(
                        paint,
                        &paint.yellow(&format!(
                            "not connected: {} of input dropped (use --buffer to keep it)",
                            format_size(n as u64)
                        )),
                    );
                    break;
                }
                Err(SendError::OutageBufferFull { .. }) => {
                    // Stop reading stdin until the connection is back.
                    let seen = conn.stats().connects;
                    if let Err(reason) = connect_after(conn, seen).await {
                        lock(ledger).never_sent(n);
                        return Err(gave_up(reason));
                    }
                    // Up, but perhaps not yet taking sends: try again soon.
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err(
                    SendError::Closed { .. }
                    | SendError::ConnectionClosed { .. }
                    | SendError::Disconnected { .. },
                ) => {
                    lock(ledger).never_sent(n);
                    return Err(gave_up(conn.closed().await));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    }

    // Stdin ended. Buffered input needs a live connection to go out.
    if !interrupted && config.buffer.is_some() && conn.state() != State::Connected {
        stamped(
            paint,
            "stdin ended; waiting for the connection to send what is buffered (Ctrl-C to stop)",
        );
        let seen = conn.stats().connects;
        tokio::select! {
            r = connect_after(conn, seen) => r.map_err(gave_up)?,
            _ = &mut stop => {}
        }
    }
    Ok(())
}
