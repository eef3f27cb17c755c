//! One proxied connection: connect upstream, run both pumps, and end the
//! connection the way the faults say (RST, FIN, or a normal close).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use socket2::SockRef;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::fault::FaultState;
use crate::pump::{Pump, PumpEnd, Shared, Way};
use crate::stats::{Counters, LiveGuard};
use crate::SplitMix64;

/// Settings every connection of one proxy shares.
#[derive(Debug, Clone)]
pub(crate) struct LinkConfig {
    pub(crate) upstream: SocketAddr,
    pub(crate) connect_timeout: Duration,
    pub(crate) buffer_size: usize,
}

/// An accepted connection, ready to be run on its own task.
#[derive(Debug)]
pub(crate) struct Link {
    /// Counts the connection as live for the whole of [`Link::run`]; never
    /// read. First, so it is dropped first: whoever sees the client's
    /// socket close finds the connection no longer counted as live.
    #[allow(dead_code)]
    pub(crate) live: LiveGuard,
    pub(crate) client: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) config: Arc<LinkConfig>,
    pub(crate) faults: watch::Receiver<FaultState>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) rng: SplitMix64,
    /// The fault state when the proxy accepted the connection: a reset or
    /// close issued after that reaches it even before its task first runs.
    pub(crate) born: FaultState,
}

/// How the proxy ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// RST both sides.
    Reset,
    /// FIN both sides, then close.
    Close,
    /// Nothing to send: both directions finished, or the proxy is going away.
    Quiet,
}

/// Makes the next close of `stream` send RST instead of FIN.
fn arm_reset(stream: &TcpStream) {
    // If this fails the close becomes a FIN, still a close; nothing better
    // can be done with a socket that refuses options.
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

async fn end(stream: &mut TcpStream, ending: Ending) {
    match ending {
        Ending::Reset => arm_reset(stream),
        Ending::Close => {
            let _ = stream.shutdown().await;
        }
        Ending::Quiet => {}
    }
}

/// The ending a reset or close issued since the connection was accepted
/// (at `born`) asks for, if one was.
fn killed(state: &FaultState, born: &FaultState) -> Option<Ending> {
    if state.reset_epoch != born.reset_epoch {
        Some(Ending::Reset)
    } else if state.close_epoch != born.close_epoch {
        Some(Ending::Close)
    } else {
        None
    }
}

impl Link {
    /// Serves the connection until it ends; never panics on peer behaviour.
    pub(crate) async fn run(mut self) {
        if !self.wait_out_blackhole().await {
            return;
        }
        let Some(mut server) = self.connect_upstream().await else {
            return;
        };
        // Without NODELAY, small writes (and every slice) would sit behind
        // Nagle's algorithm and the proxy would add tens of milliseconds.
        let _ = self.client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let ending = self.relay(&mut server).await;
        tracing::trace!(peer = %self.peer, ?ending, "connection ends");
        end(&mut self.client, ending).await;
        end(&mut server, ending).await;
    }

    /// A partition would not let the SYN through either, so a connection
    /// accepted while blackholed only reaches upstream after the heal.
    /// False: the connection ended meanwhile (a reset or close, or the
    /// proxy going away).
    async fn wait_out_blackhole(&mut self) -> bool {
        loop {
            let state = *self.faults.borrow_and_update();
            if let Some(ending) = killed(&state, &self.born) {
                end(&mut self.client, ending).await;
                return false;
            }
            if !state.blackhole {
                return true;
            }
            if self.faults.changed().await.is_err() {
                return false;
            }
        }
    }

    /// Connects upstream within the connect timeout; on failure, resets
    /// the client and counts it.
    async fn connect_upstream(&self) -> Option<TcpStream> {
        let (peer, upstream) = (self.peer, self.config.upstream);
        let connect = TcpStream::connect(upstream);
        let why = match tokio::time::timeout(self.config.connect_timeout, connect).await {
            Ok(Ok(server)) => return Some(server),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".to_string(),
        };
        tracing::debug!(%peer, %upstream, error = %why, "upstream connect failed; resetting client");
        self.counters
            .upstream_failures
            .fetch_add(1, Ordering::Relaxed);
        arm_reset(&self.client);
        None
    }

    /// Runs both pumps until the faults or the pumps end the connection,
    /// and says how.
    async fn relay(&mut self, server: &mut TcpStream) -> Ending {
        let conn_bytes = AtomicU64::new(0);
        let shared = Shared {
            conn_bytes: &conn_bytes,
            counters: &self.counters,
        };
        let born = self.born;
        let cut_after = |state: &FaultState| {
            state
                .cut_after
                .is_some_and(|limit| conn_bytes.load(Ordering::Relaxed) >= limit)
        };
        let verdict = |state: &FaultState| {
            killed(state, &born).or_else(|| cut_after(state).then_some(Ending::Reset))
        };
        let (client_read, client_write) = self.client.split();
        let (server_read, server_write) = server.split();
        let size = self.config.buffer_size;
        let faults = &mut self.faults;
        let rng = &mut self.rng;
        let up = Pump::new(
            Way::Up,
            client_read,
            server_write,
            size,
            faults.clone(),
            rng.fork(),
            shared,
        )
        .run();
        let down = Pump::new(
            Way::Down,
            server_read,
            client_write,
            size,
            faults.clone(),
            rng.fork(),
            shared,
        )
        .run();
        tokio::pin!(up, down);
        let mut ending = verdict(&faults.borrow_and_update());
        let (mut up_done, mut down_done) = (false, false);
        while ending.is_none() {
            tokio::select! {
                biased;
                changed = faults.changed() => {
                    ending = match changed {
                        Ok(()) => verdict(&faults.borrow_and_update()),
                        Err(_) => Some(Ending::Quiet),
                    };
                }
                end = &mut up, if !up_done => {
                    up_done = end == PumpEnd::Finished;
                    ending = pump_verdict(end, up_done && down_done);
                }
                end = &mut down, if !down_done => {
                    down_done = end == PumpEnd::Finished;
                    ending = pump_verdict(end, up_done && down_done);
                }
            }
        }
        ending.unwrap_or(Ending::Quiet)
    }
}

/// What one pump's end means for the connection.
fn pump_verdict(end: PumpEnd, both_finished: bool) -> Option<Ending> {
    match end {
        PumpEnd::Finished if both_finished => Some(Ending::Quiet),
        PumpEnd::Finished => None,
        PumpEnd::Reset => Some(Ending::Reset),
        PumpEnd::Stopped => Some(Ending::Quiet),
    }
}
