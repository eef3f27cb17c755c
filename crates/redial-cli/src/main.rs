//! The `redial` command: argument definitions and dispatch. Everything it
//! does lives in the `redial_cli` library.

#![forbid(unsafe_code)]
// A function a reader cannot hold in view is split (threshold in
// clippy.toml; redial's tests/layers.rs counts every line).
#![warn(clippy::too_many_lines)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, CommandFactory, Parser, Subcommand};
use clap_verbosity_flag::{Verbosity, WarnLevel};
use redial::Endpoint;
use redial_chaos::{Direction, ProxyAddr};
use redial_cli::chaos::{ChaosConfig, ChaosSchedule};
use redial_cli::connect::ConnectConfig;
use redial_cli::demo::DemoConfig;
use redial_cli::output::Paint;
use redial_cli::units;
use redial_cli::watch::WatchConfig;
use redial_cli::{UsageError, EXIT_FAILURE};

#[derive(Debug, Parser)]
#[command(
    name = "redial",
    version,
    about = "Keep TCP connections alive: a reconnecting netcat, a live watch, a fault proxy and a demo",
    after_help = concat!(
        "Examples:\n",
        "  redial demo\n",
        "  redial connect 127.0.0.1:6379 --buffer 64KiB\n",
        "  redial watch db1:5432 db2:5432\n",
        "  redial chaos --listen 127.0.0.1:7000 --upstream 127.0.0.1:6379 --reset-every 5s\n\n",
        "Durations: 250ms, 5s, 1m30s, 2h, 1d (at most 365d). Sizes: 1000, 64KiB, 1MiB, 1MB.\n\n",
        "Logs go to stderr: warnings by default, -v info, -vv debug, -vvv trace, -q errors\n",
        "only, -qq none; RUST_LOG=debug (or RUST_LOG=redial=debug, ...) when no -v/-q.\n\n",
        "Exit codes:\n",
        "  0  ok\n",
        "  1  runtime failure, or gave up reconnecting\n",
        "  2  usage error (bad flag, address, duration or size): nothing was started",
    ),
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    // Logs on stderr (see `redial_cli::logs`).
    #[command(flatten)]
    verbosity: Verbosity<WarnLevel>,
}

#[derive(Debug, Subcommand)]
enum Command {
    Demo(DemoArgs),
    Connect(ConnectArgs),
    Watch(WatchArgs),
    Chaos(ChaosArgs),
    Completions(CompletionsArgs),
    Man(ManArgs),
}

/// Print a shell completion script on stdout.
///
/// Load it for the current shell, or save it where the shell looks for
/// completions.
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  source <(redial completions bash)\n",
    "  redial completions zsh > ~/.zfunc/_redial\n",
    "  redial completions fish > ~/.config/fish/completions/redial.fish",
))]
struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_name = "SHELL")]
    shell: clap_complete::Shell,
}

/// Print the man page (roff) on stdout: redial(1), or a command's own
/// page, redial-connect(1) and so on.
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  redial man | man -l -\n",
    "  redial man > /usr/local/share/man/man1/redial.1\n",
    "  redial man connect > /usr/local/share/man/man1/redial-connect.1",
))]
struct ManArgs {
    /// The command whose page to print (default: redial's own).
    #[arg(value_name = "COMMAND", value_parser = ["demo", "connect", "watch", "chaos", "completions", "man"])]
    command: Option<String>,
}

/// Watch redial survive FIN, RST, refused connects, a blackhole and a slow
/// link, then see where every message went.
///
/// Starts an echo server behind the fault proxy, a pool of connections plus
/// one single connection, sends numbered messages and injects faults on a
/// schedule. Resets and recoveries are printed on stderr as they happen;
/// the summary table goes to stdout. Exits 1 if any message was lost
/// silently.
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  redial demo\n",
    "  redial demo --seconds 8 --connections 5 --seed 7\n\n",
    "Exit codes:\n",
    "  0  ok: every message echoed or accounted for\n",
    "  1  runtime failure, or a message was lost silently\n",
    "  2  usage error",
))]
struct DemoArgs {
    /// How long to inject faults, in seconds (the schedule scales with it).
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(4..=3600))]
    seconds: u64,
    /// Connections in the pool (one single connection comes on top).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=64))]
    connections: u16,
    /// Seed for the proxy's randomness and the backoff jitter.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

/// Backoff and timeouts shared by `connect` and `watch`.
#[derive(Debug, Args)]
struct Reconnect {
    /// Reconnect delays, INITIAL..MAX (each failure multiplies the delay).
    #[arg(long, value_name = "INITIAL..MAX", default_value = "100ms..30s", value_parser = units::parse_backoff)]
    backoff: (Duration, Duration),
    /// Factor between two delays of the backoff.
    #[arg(long, value_name = "FACTOR", default_value_t = 2.0)]
    backoff_factor: f64,
    /// Give up one connect attempt after this long.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = units::parse_duration)]
    connect_timeout: Duration,
    /// Count the connection lost when nothing was read for this long.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    idle_timeout: Option<Duration>,
}

/// A reconnecting netcat: stdin to the socket, the socket to stdout.
///
/// State changes (connected, lost, retrying) go to stderr with timestamps.
/// While the connection is down, stdin data is rejected and reported,
/// unless --buffer keeps it (and what the lost connection never sent) for
/// the next connection. On stdin EOF, or Ctrl-C, the queued bytes are
/// flushed, FIN is sent and the command exits 0; with --buffer it first
/// waits for the connection to come back if input is still buffered.
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  redial connect 127.0.0.1:6379\n",
    "  printf 'PING\\r\\n' | redial connect cache.local:6379 --max-attempts 5\n",
    "  redial connect [::1]:7000 --buffer 64KiB --backoff 50ms..2s --idle-timeout 30s\n\n",
    "Exit codes:\n",
    "  0  stdin ended (or Ctrl-C) and everything was flushed\n",
    "  1  gave up reconnecting (--max-attempts, --give-up-after) or another runtime failure\n",
    "  2  usage error",
))]
struct ConnectArgs {
    #[arg(value_name = "HOST:PORT", value_parser = parse_endpoint,
          help = "Where to connect: HOST:PORT, [V6ADDR]:PORT or unix:/path")]
    endpoint: Endpoint,
    /// Keep up to this much stdin data during an outage and send it after
    /// the reconnect (default: reject it and say so on stderr).
    #[arg(long, value_name = "BYTES", value_parser = units::parse_size_usize)]
    buffer: Option<usize>,
    /// Give up after this many failed attempts in a row.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: Option<u32>,
    /// Give up when reconnecting has failed for this long.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    give_up_after: Option<Duration>,
    #[command(flatten)]
    reconnect: Reconnect,
}

/// Keep connections to endpoints and watch their state live.
///
/// On a terminal: a table (state, uptime, resets, failed attempts, last
/// error, bytes in/out) redrawn in place every second. With --json, or when
/// stdout is not a terminal: one JSON object per state change. Ctrl-C
/// disconnects everything cleanly.
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  redial watch db1:5432 db2:5432 cache.local:6379\n",
    "  redial watch --follow cache.svc.cluster.local:11211 --resolve-every 5s\n",
    "  redial watch lb.local:443 --connections 8 --max-lifetime 10m\n",
    "  redial watch --file endpoints.txt --json | jq .\n",
    "  redial watch db1:5432 --json --metrics 127.0.0.1:9100\n\n",
    "Exit codes:\n",
    "  0  stopped with Ctrl-C (or SIGTERM) after a clean disconnect\n",
    "  1  runtime failure\n",
    "  2  usage error (a bad endpoint, on the command line or in --file)",
))]
struct WatchArgs {
    #[arg(value_name = "ENDPOINT", value_parser = parse_endpoint, required_unless_present_any = ["file", "follow"],
          help = "Endpoints to watch: HOST:PORT, [V6ADDR]:PORT or unix:/path")]
    endpoints: Vec<Endpoint>,
    /// Follow a name (HOST:PORT): a member per address it resolves to,
    /// added and drained as the name changes. Repeatable.
    #[arg(long, value_name = "NAME:PORT", value_parser = parse_follow)]
    follow: Vec<String>,
    /// How often a followed name is resolved again (also soon after a
    /// member's connection fails).
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration, default_value = "30s")]
    resolve_every: Duration,
    /// Replace each connection after it has been up this long (± 10 %),
    /// the new one made before the old one closes.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    max_lifetime: Option<Duration>,
    /// Read endpoints from a file, one a line (# starts a comment).
    #[arg(long, value_name = "PATH")]
    file: Option<PathBuf>,
    /// One JSON object per state change on stdout, even on a terminal.
    #[arg(long)]
    json: bool,
    /// Connections kept to each endpoint (one pool per endpoint), or to
    /// each address of a followed name.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    connections: u16,
    /// Serve redial's metrics in the Prometheus text format on ADDR
    /// (HOST:PORT; GET /metrics).
    #[arg(long, value_name = "ADDR")]
    metrics: Option<std::net::SocketAddr>,
    #[command(flatten)]
    reconnect: Reconnect,
}

/// The fault-injection proxy as a tool.
///
/// Listens on --listen and forwards every connection to --upstream, with a
/// line on stderr for each connection it accepts. Faults
/// come from flags, on a schedule, or from commands typed on stdin, one a
/// line: reset, close, refuse, accept, blackhole, heal, latency 50ms (or
/// latency 50ms 10ms with jitter), bandwidth 64KiB, slice 16 (or slice 16
/// 1ms), cut-after 1KiB, slow-close 500ms, random, stats (to stdout), help,
/// quit. Runs until `quit`, Ctrl-C or SIGTERM; stdin ending does not stop it.
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n",
    "  redial chaos --listen 127.0.0.1:7000 --upstream 127.0.0.1:6379\n",
    "  redial chaos --listen 127.0.0.1:7000 --upstream 127.0.0.1:6379 --reset-every 5s --latency 20ms\n",
    "  redial chaos --listen 127.0.0.1:7000 --upstream db:5432 --blackhole-after 10s --for 3s\n\n",
    "Exit codes:\n",
    "  0  stopped with quit, Ctrl-C or SIGTERM\n",
    "  1  runtime failure (the listen port is taken, ...)\n",
    "  2  usage error",
))]
struct ChaosArgs {
    /// Address to listen on (port 0 picks a free one; it is printed).
    #[arg(long, value_name = "ADDR", value_parser = parse_listen)]
    listen: SocketAddr,
    /// Server to forward to (resolved once, at start).
    #[arg(long, value_name = "ADDR", value_parser = parse_upstream)]
    upstream: SocketAddr,
    /// Seed for jitter and random faults.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Reset every connection this often.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    reset_every: Option<Duration>,
    /// Close (FIN) every connection this often.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    close_every: Option<Duration>,
    /// Apply a random fault this often (healing the previous one first).
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    random_every: Option<Duration>,
    /// Delay data by this much.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    latency: Option<Duration>,
    /// Extra random delay up to this much, on top of --latency.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    jitter: Option<Duration>,
    /// Limit throughput to this many bytes per second.
    #[arg(long, value_name = "BYTES", value_parser = units::parse_size)]
    bandwidth: Option<u64>,
    /// Which way --latency, --jitter and --bandwidth apply.
    #[arg(long, value_name = "WAY", default_value = "both", value_parser = parse_direction)]
    direction: Direction,
    /// Reset each connection after it forwarded this many bytes.
    #[arg(long, value_name = "BYTES", value_parser = units::parse_size)]
    cut_after: Option<u64>,
    /// Hold each close (FIN or RST) this long before passing it on.
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    slow_close: Option<Duration>,
    /// Start a blackhole this long after the start...
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    blackhole_after: Option<Duration>,
    /// ...lasting this long (default: until healed by hand).
    #[arg(long = "for", alias = "blackhole-for", value_name = "DURATION", value_parser = units::parse_duration, requires = "blackhole_after")]
    blackhole_for: Option<Duration>,
    /// Refuse new connections this long after the start...
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration)]
    refuse_after: Option<Duration>,
    /// ...for this long (default: until `accept` or `heal`).
    #[arg(long, value_name = "DURATION", value_parser = units::parse_duration, requires = "refuse_after")]
    refuse_for: Option<Duration>,
}

fn parse_endpoint(s: &str) -> Result<Endpoint, String> {
    s.parse::<Endpoint>().map_err(|e| e.to_string())
}

/// A name to follow: `host:port` (an address works too, and then never
/// changes).
fn parse_follow(s: &str) -> Result<String, String> {
    s.parse::<Endpoint>().map_err(|e| e.to_string())?;
    if s.starts_with("unix:") || s.contains(',') {
        return Err(format!("`{s}`: expected NAME:PORT"));
    }
    Ok(s.to_string())
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    s.to_addr("listen").map_err(|e| e.to_string())
}

fn parse_upstream(s: &str) -> Result<SocketAddr, String> {
    let addr = s.to_addr("upstream").map_err(|e| e.to_string())?;
    if addr.port() == 0 {
        return Err(format!("upstream `{s}`: port 0 cannot be connected to"));
    }
    Ok(addr)
}

fn parse_direction(s: &str) -> Result<Direction, String> {
    redial_cli::chaos::parse_direction(s).ok_or_else(|| format!("`{s}`: expected up, down or both"))
}

/// Endpoints from `--file`, one a line; errors name the file and line.
fn read_endpoint_file(path: &PathBuf) -> Result<Vec<Endpoint>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read endpoint file {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let ep = line
            .parse::<Endpoint>()
            .map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?;
        out.push(ep);
    }
    if out.is_empty() {
        return Err(format!("{} lists no endpoint", path.display()));
    }
    Ok(out)
}

/// Builds the connection options of `connect` and `watch` and checks them
/// as the library will, so that a bad value is a usage error before
/// anything starts.
fn check_options(command: &Command) -> Result<(), UsageError> {
    match command {
        Command::Connect(a) => connect_config(a).options().map(drop),
        Command::Watch(a) => reconnect_options(&a.reconnect).options().map(drop),
        Command::Demo(_) | Command::Chaos(_) | Command::Completions(_) | Command::Man(_) => Ok(()),
    }
}

fn connect_config(a: &ConnectArgs) -> ConnectConfig {
    ConnectConfig {
        endpoint: a.endpoint.clone(),
        buffer: a.buffer,
        max_attempts: a.max_attempts,
        give_up_after: a.give_up_after,
        reconnect: reconnect_options(&a.reconnect),
    }
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Demo(_) => "demo",
            Command::Connect(_) => "connect",
            Command::Watch(_) => "watch",
            Command::Chaos(_) => "chaos",
            Command::Completions(_) => "completions",
            Command::Man(_) => "man",
        }
    }
}

/// Exits 2 with `msg`, under the usage of subcommand `sub`, as clap does
/// for the errors it finds itself.
fn usage_error(sub: &str, msg: String) -> ! {
    let mut cli = Cli::command();
    cli.build();
    match cli.find_subcommand_mut(sub) {
        Some(cmd) => cmd
            .error(clap::error::ErrorKind::ValueValidation, msg)
            .exit(),
        None => cli
            .error(clap::error::ErrorKind::ValueValidation, msg)
            .exit(),
    }
}

fn reconnect_options(r: &Reconnect) -> redial_cli::connect::Reconnect {
    redial_cli::connect::Reconnect {
        backoff_initial: r.backoff.0,
        backoff_max: r.backoff.1,
        backoff_factor: r.backoff_factor,
        connect_timeout: r.connect_timeout,
        idle_timeout: r.idle_timeout,
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Demo(a) => {
            let report = redial_cli::demo::run(demo_config(&a), Paint::stderr()).await?;
            print!("\n{}", report.render(Paint::stdout()));
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(EXIT_FAILURE)
            })
        }
        Command::Connect(a) => {
            redial_cli::connect::run(connect_config(&a), Paint::stderr()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Watch(a) => {
            redial_cli::watch::run(watch_config(a)).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Chaos(a) => {
            redial_cli::chaos::run(chaos_config(a), Paint::stderr()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions(a) => {
            let mut cli = Cli::command();
            clap_complete::generate(a.shell, &mut cli, "redial", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man(a) => man(&a),
    }
}

fn demo_config(a: &DemoArgs) -> DemoConfig {
    DemoConfig {
        duration: Duration::from_secs(a.seconds),
        connections: usize::from(a.connections),
        seed: a.seed,
        ..DemoConfig::default()
    }
}

/// The endpoints named on the command line and in `--file`; a file that
/// cannot be read is a usage error.
fn watch_config(a: WatchArgs) -> WatchConfig {
    let mut endpoints = a.endpoints;
    if let Some(file) = &a.file {
        match read_endpoint_file(file) {
            Ok(more) => endpoints.extend(more),
            Err(msg) => usage_error("watch", msg),
        }
    }
    WatchConfig {
        endpoints,
        follow: a.follow,
        resolve_every: a.resolve_every,
        max_lifetime: a.max_lifetime,
        per_endpoint: usize::from(a.connections),
        json: a.json,
        reconnect: reconnect_options(&a.reconnect),
        refresh: Duration::from_secs(1),
        metrics: a.metrics,
    }
}

fn chaos_config(a: ChaosArgs) -> ChaosConfig {
    ChaosConfig {
        listen: a.listen,
        upstream: a.upstream,
        seed: a.seed,
        schedule: ChaosSchedule {
            reset_every: a.reset_every,
            close_every: a.close_every,
            random_every: a.random_every,
            latency: a.latency,
            jitter: a.jitter,
            bandwidth: a.bandwidth,
            direction: a.direction,
            cut_after: a.cut_after,
            slow_close: a.slow_close,
            blackhole_after: a.blackhole_after,
            blackhole_for: a.blackhole_for,
            refuse_after: a.refuse_after,
            refuse_for: a.refuse_for,
        },
    }
}

/// Writes the man page of `redial`, or of one of its commands.
fn man(a: &ManArgs) -> anyhow::Result<ExitCode> {
    let mut cli = Cli::command();
    // Building names the commands' pages `redial-connect`, ...
    cli.build();
    let page = match &a.command {
        Some(name) => cli
            .find_subcommand(name)
            .cloned()
            .ok_or_else(|| anyhow::anyhow!("no command `{name}`"))?
            .version(env!("CARGO_PKG_VERSION")),
        None => cli,
    };
    match clap_mangen::Man::new(page).render(&mut std::io::stdout()) {
        // `redial man | head`: the reader has what it wanted.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        other => {
            other.context("cannot write the man page")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let v = &cli.verbosity;
    redial_cli::logs::init(v.tracing_level_filter(), v.is_present());
    let name = cli.command.name();
    if let Err(e) = check_options(&cli.command) {
        usage_error(name, e.0);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("redial: error: {e:#}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => {
            // Connections and timers of the command may still hold tasks.
            runtime.shutdown_timeout(Duration::from_millis(100));
            code
        }
        Err(e) => {
            runtime.shutdown_timeout(Duration::from_millis(100));
            // Refused by the library before anything started.
            if let Some(usage) = e.downcast_ref::<UsageError>() {
                usage_error(name, usage.0.clone());
            }
            eprintln!("redial: error: {e:#}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
