//! `redial watch --metrics ADDR`: redial's metrics (the library's
//! `metrics` feature) in the Prometheus text format, answered over HTTP.
//!
//! The recorder is `metrics-exporter-prometheus`'s, without its HTTP
//! listener: that one brings in hyper and its stack for what is, here, one
//! `GET` at a time. A scrape is answered by this small responder instead:
//! `GET /metrics` (or `/`) gets the text format, anything else a 404, and
//! every connection is closed after its answer.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Bucket bounds of the `_seconds` histograms: a millisecond to an hour.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
];

/// The most a request's head may take; a longer one is refused.
const MAX_REQUEST: usize = 8 * 1024;

/// How long a scraper may take to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Installs the Prometheus recorder for the whole process and answers
/// scrapes on `addr`. Returns the address it listens on (useful with port
/// 0). Call before any connection is made, so every metric is recorded.
///
/// # Errors
///
/// When a recorder is installed already or `addr` cannot be listened on.
///
/// ```no_run
/// # async fn f() -> anyhow::Result<()> {
/// let addr = redial_cli::watch::prometheus::serve("127.0.0.1:9100".parse()?).await?;
/// println!("scrape http://{addr}/metrics");
/// # Ok(()) }
/// ```
pub async fn serve(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("--metrics {addr}: cannot listen"))?;
    let local = listener.local_addr()?;
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)?
        .install_recorder()
        .context("--metrics: installing the Prometheus recorder")?;
    redial::metrics::describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        // Drains the histograms' samples into their buckets now and then,
        // so memory stays flat between scrapes.
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((sock, _)) => {
                    let handle = handle.clone();
                    tokio::spawn(async move {
                        let _ = tokio::time::timeout(REQUEST_TIMEOUT, answer(sock, &handle)).await;
                    });
                }
                Err(e) => {
                    eprintln!("redial: --metrics: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(local)
}

/// Reads one request head and answers it.
async fn answer(mut sock: TcpStream, handle: &PrometheusHandle) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = sock.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_REQUEST {
            return respond(&mut sock, "431 Request Header Fields Too Large", "").await;
        }
    }
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split(' ');
    match (parts.next(), parts.next()) {
        (Some("GET"), Some("/metrics" | "/")) => {
            respond(&mut sock, "200 OK", &handle.render()).await
        }
        (Some("GET"), Some(_)) => respond(&mut sock, "404 Not Found", "try /metrics\n").await,
        _ => respond(&mut sock, "405 Method Not Allowed", "").await,
    }
}

async fn respond(sock: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body.as_bytes()).await?;
    sock.shutdown().await
}
