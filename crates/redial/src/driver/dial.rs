//! One connect attempt: resolve the endpoint again, then try every address,
//! starting the next one 250 ms after the previous if it has not answered
//! (Happy Eyeballs, RFC 8305), each with its own timeout.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpSocket, UnixStream};
use tokio::time::error::Elapsed;
use tokio::time::{sleep, timeout_at, Instant};

use crate::driver::transport::Transport;
use crate::endpoint::{Endpoint, Kind};
use crate::options::Options;

/// Delay before racing the next address against one that has not answered
/// yet: RFC 8305's recommended "connection attempt delay".
pub(crate) const HAPPY_EYEBALLS_DELAY: Duration = Duration::from_millis(250);

/// The step of a connect attempt that failed, when it was not the TCP (or
/// Unix) connect itself: carried inside the attempt's `io::Error`, whose
/// kind stays the cause's, so that a failure is classified by type rather
/// than by its wording (the metrics' `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Resolving the host name.
    Resolve,
    /// The TLS handshake, its timeout included.
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Tls,
}

/// The inner error of a failed [`Step`]: the message as the attempt words
/// it, and the step.
#[derive(Debug)]
struct StepError {
    #[cfg_attr(not(feature = "metrics"), allow(dead_code))]
    step: Step,
    message: String,
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StepError {}

/// An error of `kind` that failed at `step`, worded `message`.
pub(crate) fn step_error(kind: io::ErrorKind, step: Step, message: String) -> io::Error {
    io::Error::new(kind, StepError { step, message })
}

/// The step an attempt's error failed at, if not the connect itself.
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) fn failed_step(err: &io::Error) -> Option<Step> {
    err.get_ref()?.downcast_ref::<StepError>().map(|e| e.step)
}

#[derive(Debug, Clone)]
enum Target {
    /// An address, and the host name it was resolved from (for TLS; none
    /// for an endpoint given as an address, whose IP is then the name).
    Tcp(SocketAddr, Option<std::sync::Arc<str>>),
    Unix(PathBuf),
}

/// Resolves `endpoint` into the addresses to try, in order.
async fn resolve(endpoint: &Endpoint, out: &mut Vec<Target>) -> io::Result<()> {
    match endpoint.kind() {
        // No name to format: TLS, the only user, falls back to the IP, and
        // formatting it for every attempt was a tenth of the work of a
        // first connect.
        Kind::Addr(a) => out.push(Target::Tcp(*a, None)),
        Kind::Unix(p) => out.push(Target::Unix(p.clone())),
        Kind::Host { host, port } => {
            let addrs = tokio::net::lookup_host((host.as_str(), *port))
                .await
                .map_err(|e| step_error(e.kind(), Step::Resolve, format!("resolve {host}: {e}")))?;
            let before = out.len();
            let name: std::sync::Arc<str> = host.as_str().into();
            out.extend(addrs.map(|a| Target::Tcp(a, Some(name.clone()))));
            if out.len() == before {
                return Err(step_error(
                    io::ErrorKind::NotFound,
                    Step::Resolve,
                    format!("resolve {host}: no addresses"),
                ));
            }
        }
        Kind::Any(list) => {
            let mut last_err = None;
            for e in list {
                if let Err(err) = Box::pin(resolve(e, out)).await {
                    last_err = Some(err);
                }
            }
            if out.is_empty() {
                return Err(last_err.unwrap_or_else(|| io::Error::other("no endpoints")));
            }
        }
    }
    Ok(())
}

/// Awaits `fut` for at most `limit` from now, like `tokio::time::timeout`,
/// but arms the timer only when `fut` is still pending after the runtime
/// has looked at its I/O events once: a loopback connect has completed by
/// then, and registering and cancelling a timer was ~800 of a first
/// connect's ~12,000 instructions. The deadline still counts from now.
async fn within<F: Future>(limit: Duration, fut: F) -> Result<F::Output, Elapsed> {
    let deadline = crate::driver::after(Instant::now(), limit);
    tokio::pin!(fut);
    tokio::select! {
        biased;
        out = &mut fut => return Ok(out),
        // Pending once, until after the runtime's next turn of its I/O
        // driver (tokio defers a yielded task's wake until then).
        () = tokio::task::yield_now() => {}
    }
    timeout_at(deadline, fut).await
}

/// Keepalive and TCP_USER_TIMEOUT, as `opts` configure them.
///
/// With a user timeout set, Linux never reads the keepalive probe count:
/// `tcp_keepalive_timer` (net/ipv4/tcp_timer.c) closes an idle connection
/// once `elapsed >= icsk_user_timeout` with a probe out, and compares
/// `icsk_probes_out` with `keepalive_probes(tp)` (TCP_KEEPCNT) only when
/// `icsk_user_timeout == 0`. Setting TCP_KEEPCNT there would be a system
/// call per connect that changes nothing, so it is set only where the
/// count decides: no user timeout, or a platform without one.
fn set_dead_peer_options(s: &SockRef<'_>, opts: &Options) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let user_timeout = opts.user_timeout;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let user_timeout: Option<Duration> = None;
    if let Some(k) = opts.keepalive {
        let ka = TcpKeepalive::new()
            .with_time(k.idle)
            .with_interval(k.interval);
        let ka = match user_timeout {
            Some(_) => ka,
            None => ka.with_retries(k.retries),
        };
        s.set_tcp_keepalive(&ka)?;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Some(d) = user_timeout {
        s.set_tcp_user_timeout(Some(d))?;
    }
    Ok(())
}

fn with_context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

async fn connect_tcp(
    addr: SocketAddr,
    host: Option<&str>,
    opts: &Options,
) -> io::Result<Transport> {
    #[cfg(not(feature = "tls"))]
    let _ = host;
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    {
        let s = SockRef::from(&socket);
        s.set_tcp_nodelay(opts.nodelay)?;
        set_dead_peer_options(&s, opts)?;
        if let Some(local) = opts.bind {
            s.bind(&local.into())
                .map_err(|e| with_context(e, &format!("bind {local}")))?;
        }
        if let Some(hook) = &opts.socket_hook {
            hook(&s).map_err(|e| with_context(e, "socket option hook"))?;
        }
    }
    #[cfg(feature = "tls")]
    let started = Instant::now();
    match within(opts.connect_timeout, socket.connect(addr)).await {
        #[cfg(feature = "tls")]
        Ok(Ok(stream)) if opts.tls.is_some() => {
            let Some(tls) = &opts.tls else {
                return Ok(Transport::Tcp(stream));
            };
            let ip;
            let host = match host {
                Some(h) => Some(h),
                None => {
                    ip = addr.ip().to_string();
                    Some(ip.as_str())
                }
            };
            // The handshake shares the attempt's connect timeout.
            let left = opts.connect_timeout.saturating_sub(started.elapsed());
            match tokio::time::timeout(left, crate::driver::tls::handshake(stream, tls, host)).await
            {
                Ok(Ok(t)) => Ok(Transport::Tls(Box::new(t))),
                Ok(Err(e)) => Err(step_error(
                    e.kind(),
                    Step::Tls,
                    format!("connect {addr}: {e}"),
                )),
                Err(_) => Err(step_error(
                    io::ErrorKind::TimedOut,
                    Step::Tls,
                    format!("connect {addr}: TLS handshake timed out"),
                )),
            }
        }
        Ok(Ok(stream)) => Ok(Transport::Tcp(stream)),
        Ok(Err(e)) => Err(with_context(e, &format!("connect {addr}"))),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connect {addr}: timed out after {:?}", opts.connect_timeout),
        )),
    }
}

async fn connect_unix(path: PathBuf, opts: &Options) -> io::Result<Transport> {
    match within(opts.connect_timeout, UnixStream::connect(&path)).await {
        Ok(Ok(s)) => Ok(Transport::Unix(s)),
        Ok(Err(e)) => Err(with_context(e, &format!("connect unix:{}", path.display()))),
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connect unix:{}: timed out", path.display()),
        )),
    }
}

async fn connect_target(t: Target, opts: &Options) -> io::Result<Transport> {
    match t {
        Target::Tcp(a, host) => connect_tcp(a, host.as_deref(), opts).await,
        Target::Unix(p) => connect_unix(p, opts).await,
    }
}

type Attempt<'a> = Pin<Box<dyn Future<Output = io::Result<Transport>> + Send + 'a>>;

/// Makes one connect attempt to `endpoint`. `rotate` picks the address to
/// start with, so one dead address does not delay every attempt.
pub(crate) async fn dial(
    endpoint: &Endpoint,
    opts: &Options,
    rotate: usize,
) -> io::Result<Transport> {
    // One address and nothing to resolve (the common case): no list of
    // targets to build.
    match endpoint.kind() {
        Kind::Addr(a) => return connect_tcp(*a, None, opts).await,
        Kind::Unix(p) => return connect_unix(p.clone(), opts).await,
        _ => {}
    }
    let mut targets = Vec::new();
    resolve(endpoint, &mut targets).await?;
    if targets.len() == 1 {
        if let Some(t) = targets.pop() {
            return connect_target(t, opts).await;
        }
    }
    let start = rotate % targets.len();
    targets.rotate_left(start);

    let mut pending = targets.into_iter();
    let mut running: Vec<Attempt<'_>> = Vec::new();
    let mut last_err: Option<io::Error> = None;
    let stagger = sleep(HAPPY_EYEBALLS_DELAY);
    tokio::pin!(stagger);
    if let Some(t) = pending.next() {
        running.push(Box::pin(connect_target(t, opts)));
    }
    std::future::poll_fn(|cx| loop {
        let mut i = 0;
        while i < running.len() {
            match running[i].as_mut().poll(cx) {
                Poll::Ready(Ok(t)) => return Poll::Ready(Ok(t)),
                Poll::Ready(Err(e)) => {
                    last_err = Some(e);
                    drop(running.swap_remove(i));
                }
                Poll::Pending => i += 1,
            }
        }
        // Start the next address when nothing is running or the previous
        // one has had its head start.
        let due = running.is_empty() || stagger.as_mut().poll(cx).is_ready();
        if due {
            if let Some(t) = pending.next() {
                running.push(Box::pin(connect_target(t, opts)));
                stagger
                    .as_mut()
                    .reset(Instant::now() + HAPPY_EYEBALLS_DELAY);
                continue;
            }
        }
        if running.is_empty() {
            return Poll::Ready(Err(last_err
                .take()
                .unwrap_or_else(|| io::Error::other("no address to connect to"))));
        }
        return Poll::Pending;
    })
    .await
}
