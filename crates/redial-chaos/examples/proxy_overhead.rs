//! Measures the latency the proxy adds with no fault active: 64-byte
//! ping-pongs against a local echo server, directly and through the proxy,
//! with p50/p99 round-trip times side by side.
//!
//! Run with `cargo run --release -p redial-chaos --example proxy_overhead`
//! (optionally followed by the number of round trips, default 20000).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use redial_chaos::Proxy;

const MSG: usize = 64;
const WARMUP: usize = 1_000;
const BLOCK: usize = 500;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rounds: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 20_000,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let (echo, proxy) = runtime.block_on(async {
        let echo = start_echo().await?;
        let proxy = Proxy::start("127.0.0.1:0", echo).await?;
        Ok::<_, Box<dyn std::error::Error>>((echo, proxy))
    })?;

    // The client is a plain blocking socket on its own thread, so the
    // measurement includes only the proxy's work on the runtime. Direct and
    // proxied rounds alternate in blocks so both see the same machine load.
    let mut direct_conn = Client::connect(echo)?;
    let mut proxied_conn = Client::connect(proxy.local_addr())?;
    let (mut direct, mut proxied) = (Vec::new(), Vec::new());
    direct_conn.run(WARMUP, &mut Vec::new())?;
    proxied_conn.run(WARMUP, &mut Vec::new())?;
    let mut left = rounds;
    while left > 0 {
        let block = left.min(BLOCK);
        direct_conn.run(block, &mut direct)?;
        proxied_conn.run(block, &mut proxied)?;
        left -= block;
    }
    direct.sort_unstable();
    proxied.sort_unstable();

    println!("{rounds} round trips of {MSG} bytes over loopback");
    println!(
        "{:>10} {:>12} {:>12} {:>12}",
        "", "direct", "via proxy", "added"
    );
    for (name, q) in [("p50", 0.50), ("p90", 0.90), ("p99", 0.99)] {
        let (d, p) = (quantile(&direct, q), quantile(&proxied, q));
        println!(
            "{name:>10} {:>12} {:>12} {:>12}",
            micros(d),
            micros(p),
            micros(p.saturating_sub(d))
        );
    }
    let (d, p) = (mean(&direct), mean(&proxied));
    println!(
        "{:>10} {:>12} {:>12} {:>12}",
        "mean",
        micros(d),
        micros(p),
        micros(p.saturating_sub(d))
    );
    runtime.block_on(proxy.shutdown());
    Ok(())
}

async fn start_echo() -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = conn.set_nodelay(true);
                let (mut r, mut w) = conn.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    Ok(addr)
}

/// One blocking echo client.
struct Client {
    stream: TcpStream,
}

impl Client {
    fn connect(addr: SocketAddr) -> std::io::Result<Self> {
        let stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        Ok(Self { stream })
    }

    /// `rounds` ping-pongs, each round-trip time appended to `rtts`.
    fn run(&mut self, rounds: usize, rtts: &mut Vec<Duration>) -> std::io::Result<()> {
        let msg = [0x5a_u8; MSG];
        let mut back = [0_u8; MSG];
        for _ in 0..rounds {
            let start = Instant::now();
            self.stream.write_all(&msg)?;
            self.stream.read_exact(&mut back)?;
            rtts.push(start.elapsed());
        }
        Ok(())
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn mean(samples: &[Duration]) -> Duration {
    let total: Duration = samples.iter().sum();
    total / u32::try_from(samples.len().max(1)).unwrap_or(u32::MAX)
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}
