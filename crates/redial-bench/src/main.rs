//! redial-bench: measures redial and its peers (plain tokio, stubborn-io,
//! node connman and node net) in the same run on the same machine, and
//! writes the table into BENCHMARKS.md.
//!
//! ```text
//! cargo run --release -p redial-bench              # full run, writes BENCHMARKS.md
//! cargo run --release -p redial-bench -- --quick   # CI: small counts, 1 run, checks counts only
//! ```
//!
//! The parent process orchestrates; servers and Rust clients are child
//! processes of this same binary (`server <kind> k=v..`, `client <peer>
//! <scenario> k=v..`), node clients run `node/client.js`. The parent first
//! installs connman with npm (that needs the registry), then re-runs itself
//! in a private network namespace (`unshare -n`, loopback only) so that the
//! kernel's connect counter sees no other process.

#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod clock;
mod hist;
mod kv;
mod peers;
mod proc;
mod procfs;
mod report;
mod scenarios;
mod servers;

use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{bail, Result};
use rustix::process::{getrlimit, setrlimit, Resource};

use scenarios::{Ctx, Section};

const NETNS_ENV: &str = "REDIAL_BENCH_NETNS";
const NODE_ERR_ENV: &str = "REDIAL_BENCH_NODE_ERR";
const BEGIN: &str = "<!-- results:begin (written by redial-bench; do not edit by hand) -->";
const END: &str = "<!-- results:end -->";

struct Args {
    quick: bool,
    runs: usize,
    only: Option<Vec<String>>,
    peers: Option<Vec<String>>,
    no_node: bool,
    no_netns: bool,
    write: bool,
}

fn parse(args: &[String]) -> Result<Args> {
    let mut a = Args {
        quick: false,
        runs: 3,
        only: None,
        peers: None,
        no_node: false,
        no_netns: false,
        write: true,
    };
    let mut it = args.iter();
    while let Some(x) = it.next() {
        match x.as_str() {
            "--quick" => a.quick = true,
            "--runs" => a.runs = it.next().map(|v| v.parse()).transpose()?.unwrap_or(3),
            "--only" => {
                a.only = it
                    .next()
                    .map(|v| v.split(',').map(str::to_string).collect())
            }
            "--peers" => {
                a.peers = it
                    .next()
                    .map(|v| v.split(',').map(str::to_string).collect())
            }
            "--no-node" => a.no_node = true,
            "--no-netns" => a.no_netns = true,
            "--no-write" => a.write = false,
            "-h" | "--help" => {
                println!("usage: redial-bench [--quick] [--runs N] [--only throughput,producers,fanout,pingpong,recovery,scale] [--peers redial,tokio-mpsc,..] [--no-node] [--no-netns] [--no-write]");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other} (try --help)"),
        }
    }
    if a.quick {
        a.runs = 1;
        a.write = false;
    }
    Ok(a)
}

/// Soft open-file limit up to the hard one (children inherit it): 10,000+
/// connections need it.
fn raise_nofile() -> u64 {
    let l = getrlimit(Resource::Nofile);
    let mut n = l.current.unwrap_or(1024);
    if let Some(max) = l.maximum {
        if setrlimit(
            Resource::Nofile,
            rustix::process::Rlimit {
                current: Some(max),
                maximum: Some(max),
            },
        )
        .is_ok()
        {
            n = max;
        }
    }
    n
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("server") if args.len() >= 2 => {
            raise_nofile();
            servers::run(&args[1], &kv::Kv::parse(&args[2..])).map(|_| ExitCode::SUCCESS)
        }
        Some("client") if args.len() >= 3 => {
            raise_nofile();
            // The recorder is the process's from here on; its handle (for
            // rendering) is not needed.
            #[cfg(feature = "metrics")]
            if let Err(e) = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()
            {
                eprintln!("redial-bench: installing the metrics recorder: {e}");
                return ExitCode::FAILURE;
            }
            peers::run(&args[1], &args[2], &kv::Kv::parse(&args[3..])).map(|_| ExitCode::SUCCESS)
        }
        _ => orchestrate(&args),
    };
    match r {
        Ok(c) => c,
        Err(e) => {
            eprintln!("redial-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Re-runs this binary in a private network namespace; `None` when that
/// is not possible here (then the run continues in the shared one).
fn reexec_in_netns(args: &[String], node_err: Option<&str>) -> Option<ExitCode> {
    let ok = Command::new("unshare")
        .args(["-n", "true"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("note: cannot make a private network namespace (unshare -n); running in the shared one, attempts counted by callbacks only");
        return None;
    }
    let exe = std::env::current_exe().ok()?;
    let mut c = Command::new("unshare");
    c.arg("-n")
        .arg("--")
        .arg(exe)
        .args(args)
        .env(NETNS_ENV, "1");
    if let Some(e) = node_err {
        c.env(NODE_ERR_ENV, e);
    }
    let status = c.status().ok()?;
    Some(ExitCode::from(
        status.code().unwrap_or(1).clamp(0, 255) as u8
    ))
}

fn setup_netns() -> Result<()> {
    let s = Command::new("ip")
        .args(["link", "set", "lo", "up"])
        .status()?;
    if !s.success() {
        bail!("ip link set lo up failed");
    }
    // Per-namespace: a wide ephemeral range for the 100,000 connections.
    let _ = std::fs::write("/proc/sys/net/ipv4/ip_local_port_range", "1024 65000");
    Ok(())
}

fn cmd_version(cmd: &str, arg: &str) -> String {
    Command::new(cmd)
        .arg(arg)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "unknown".into())
}

fn lock_version(name: &str) -> String {
    let lock = include_str!("../../../Cargo.lock");
    let key = format!("name = \"{name}\"\nversion = \"");
    lock.find(&key)
        .and_then(|i| lock[i + key.len()..].split('"').next())
        .unwrap_or("unknown")
        .to_string()
}

fn orchestrate(argv: &[String]) -> Result<ExitCode> {
    let args = parse(argv)?;
    let nofile = raise_nofile();
    let in_netns = std::env::var_os(NETNS_ENV).is_some();
    if !in_netns && !args.no_netns {
        let node_err = if args.no_node {
            Some("--no-node".to_string())
        } else {
            peers::node::install().err()
        };
        if let Some(code) = reexec_in_netns(argv, node_err.as_deref()) {
            return Ok(code);
        }
    }
    if in_netns {
        setup_netns()?;
    }
    let node = node_status(&args, in_netns);
    let started = Instant::now();
    let load_before = procfs::first_line("/proc/loadavg");
    let date = report::utc_now();
    let mut ctx = Ctx {
        quick: args.quick,
        runs: args.runs,
        node,
        peers: args.peers.clone(),
        failures: Vec::new(),
        notes: Vec::new(),
    };
    let sections = run_scenarios(&mut ctx, args.only.as_deref());
    let load = format!(
        "{load_before} at the start, {} at the end",
        procfs::first_line("/proc/loadavg")
    );
    let facts = Facts {
        date: &date,
        netns: in_netns,
        nofile,
        started,
        load: &load,
    };
    let md = render(&args, &ctx, &sections, &facts);
    println!("{md}");
    if args.write && args.only.is_none() && args.peers.is_none() {
        write_benchmarks(&md)?;
        eprintln!("wrote BENCHMARKS.md");
    }
    Ok(verdict(&ctx, started))
}

/// Node's version, or why the node peers are left out. Outside the
/// private namespace connman is installed first (that needs the
/// registry); inside it, the parent's install error is passed down.
fn node_status(args: &Args, in_netns: bool) -> Result<String, String> {
    if args.no_node {
        Err("--no-node".to_string())
    } else if let Ok(e) = std::env::var(NODE_ERR_ENV) {
        Err(e)
    } else if !in_netns {
        peers::node::install().and_then(|_| peers::node::ready())
    } else {
        peers::node::ready()
    }
}

/// Runs the scenarios `only` names (all when `None`), in the report's
/// order; a scenario that fails as a whole is a failed count check.
fn run_scenarios(ctx: &mut Ctx, only: Option<&[String]>) -> Vec<Section> {
    let want = |s: &str| only.is_none_or(|o| o.iter().any(|x| x == s));
    let mut sections: Vec<Section> = Vec::new();
    type Scenario = fn(&mut Ctx) -> Result<Section>;
    let all: [(&str, Scenario); 6] = [
        ("throughput", scenarios::throughput::run),
        ("producers", scenarios::producers::run),
        ("fanout", scenarios::fanout::run),
        ("pingpong", scenarios::pingpong::run),
        ("recovery", scenarios::recovery::run),
        ("scale", scenarios::scale::run),
    ];
    for (name, f) in all {
        if want(name) {
            match f(ctx) {
                Ok(s) => sections.push(s),
                Err(e) => ctx.fail(format!("{name}: {e:#}")),
            }
        }
    }
    sections
}

/// The exit code: success only when every count check held.
fn verdict(ctx: &Ctx, started: Instant) -> ExitCode {
    if ctx.failures.is_empty() {
        eprintln!(
            "all counts checked: ok ({:.1} s)",
            started.elapsed().as_secs_f64()
        );
        ExitCode::SUCCESS
    } else {
        eprintln!("{} count check(s) failed:", ctx.failures.len());
        for f in &ctx.failures {
            eprintln!("  - {f}");
        }
        ExitCode::FAILURE
    }
}

/// Facts about this run for the report's header.
struct Facts<'a> {
    date: &'a str,
    netns: bool,
    nofile: u64,
    started: Instant,
    load: &'a str,
}

fn render(args: &Args, ctx: &Ctx, sections: &[Section], f: &Facts<'_>) -> String {
    let (cpu, mem) = procfs::machine();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut s = String::new();
    s.push_str(&format!(
        "## Results {}\n\n- date: {}; wall time {:.0} s; {} run(s) per figure{}\n- command: `cargo run --release -p redial-bench{}`\n- machine: {cores} cores ({cpu}), {mem} memory, kernel {}, open files per process {}\n- versions: {}, redial {}, tokio {}, stubborn-io {}, node {}, connman 1.0.0\n- network: {}\n- /proc/loadavg: {} (the machine is shared; other processes' CPU shows here)\n",
        if args.quick { "(--quick: small counts, 1 run; not the published figures)" } else { "" },
        f.date,
        f.started.elapsed().as_secs_f64(),
        ctx.runs,
        if ctx.runs > 1 { ", runs interleaved across peers" } else { "" },
        if args.quick { " -- --quick" } else { "" },
        procfs::first_line("/proc/sys/kernel/osrelease"),
        f.nofile,
        cmd_version("rustc", "--version"),
        env!("CARGO_PKG_VERSION"),
        lock_version("tokio"),
        lock_version("stubborn-io"),
        ctx.node.as_deref().unwrap_or("absent"),
        if f.netns {
            "private namespace (unshare -n, loopback only): kernel counters see only this run"
        } else {
            "shared namespace: the kernel's connect counter may include other processes"
        },
        f.load,
    ));
    for n in &ctx.notes {
        s.push_str(&format!("- {n}\n"));
    }
    s.push('\n');
    let mut targets = Vec::new();
    for sec in sections {
        s.push_str(&sec.body);
        targets.extend(sec.targets.iter().cloned());
    }
    if !targets.is_empty() {
        let mut t = report::Table::new(&["target (redial)", "figure", "met"]);
        for (what, fig, ok) in targets {
            t.row(vec![
                what,
                fig,
                if ok { "yes" } else { "**MISSED**" }.into(),
            ]);
        }
        s.push_str("### Targets\n\n");
        s.push_str(&t.render());
        s.push('\n');
    }
    if !ctx.failures.is_empty() {
        s.push_str("### Failed count checks\n\n");
        for f in &ctx.failures {
            s.push_str(&format!("- {f}\n"));
        }
        s.push('\n');
    }
    s
}

/// Replaces the generated part of BENCHMARKS.md (between the markers),
/// keeping the hand-written text around it.
fn write_benchmarks(md: &str) -> Result<()> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../BENCHMARKS.md");
    let old = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (old.find(BEGIN), old.find(END)) {
        (Some(b), Some(e)) if b < e => format!("{}{BEGIN}\n{md}{}", &old[..b], &old[e..]),
        _ => format!("# Benchmarks\n\n{old}\n{BEGIN}\n{md}{END}\n"),
    };
    std::fs::write(path, new)?;
    Ok(())
}
