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
    pub(crate) client: TcpStream,
    pub(crate) peer: SocketAddr,
    pub(crate) config: Arc<LinkConfig>,
    pub(crate) faults: watch::Receiver<FaultState>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) rng: SplitMix64,
    pub(crate) live: LiveGuard,
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

impl Link {
    /// Serves the connection until it ends; never panics on peer behaviour.
    pub(crate) async fn run(self) {
        let Link {
            mut client,
            peer,
            config,
            mut faults,
            counters,
            mut rng,
            live: _live,
            born,
        } = self;
        let killed = |state: &FaultState| {
            if state.reset_epoch != born.reset_epoch {
                Some(Ending::Reset)
            } else if state.close_epoch != born.close_epoch {
                Some(Ending::Close)
            } else {
                None
            }
        };

        // A partition would not let the SYN through either, so a connection
        // accepted while blackholed only reaches upstream after the heal.
        loop {
            let state = *faults.borrow_and_update();
            if let Some(ending) = killed(&state) {
                end(&mut client, ending).await;
                return;
            }
            if !state.blackhole {
                break;
            }
            if faults.changed().await.is_err() {
                return;
            }
        }

        let connect = TcpStream::connect(config.upstream);
        let mut server = match tokio::time::timeout(config.connect_timeout, connect).await {
            Ok(Ok(server)) => server,
            Ok(Err(e)) => {
                tracing::debug!(%peer, upstream = %config.upstream, error = %e, "upstream connect failed; resetting client");
                counters.upstream_failures.fetch_add(1, Ordering::Relaxed);
                arm_reset(&client);
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, upstream = %config.upstream, "upstream connect timed out; resetting client");
                counters.upstream_failures.fetch_add(1, Ordering::Relaxed);
                arm_reset(&client);
                return;
            }
        };
        // Without NODELAY, small writes (and every slice) would sit behind
        // Nagle's algorithm and the proxy would add tens of milliseconds.
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);

        let conn_bytes = AtomicU64::new(0);
        let shared = Shared {
            conn_bytes: &conn_bytes,
            counters: &counters,
        };
        let ending = {
            let (client_read, client_write) = client.split();
            let (server_read, server_write) = server.split();
            let up = Pump::new(
                Way::Up,
                client_read,
                server_write,
                config.buffer_size,
                faults.clone(),
                rng.fork(),
                shared,
            )
            .run();
            let down = Pump::new(
                Way::Down,
                server_read,
                client_write,
                config.buffer_size,
                faults.clone(),
                rng.fork(),
                shared,
            )
            .run();
            tokio::pin!(up, down);
            let cut = |state: &FaultState| {
                state
                    .cut_after
                    .is_some_and(|limit| conn_bytes.load(Ordering::Relaxed) >= limit)
            };
            let verdict =
                |state: &FaultState| killed(state).or_else(|| cut(state).then_some(Ending::Reset));
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
        };
        tracing::trace!(%peer, ?ending, "connection ends");
        end(&mut client, ending).await;
        end(&mut server, ending).await;
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
