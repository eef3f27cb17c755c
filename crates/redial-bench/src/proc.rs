//! Child processes of the harness (servers and clients, usually this very
//! binary in another role) and the line protocol they speak on stdout:
//! one event per line, `word value...`, times in CLOCK_MONOTONIC ns.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// `cmd`, run on CPU `cpu` alone through `taskset` when the machine has
/// that CPU and `taskset` is installed; otherwise `cmd` as it is. A client
/// and its server on CPUs of their own do not take turns on one core or
/// migrate mid-run, which is most of the noise in a throughput run.
pub fn on_cpu(cmd: Command, cpu: usize) -> Command {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if cpu >= cores || !has_taskset() {
        return cmd;
    }
    let mut c = Command::new("taskset");
    c.arg("-c").arg(cpu.to_string()).arg(cmd.get_program());
    c.args(cmd.get_args());
    if let Some(dir) = cmd.get_current_dir() {
        c.current_dir(dir);
    }
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c
}

/// Whether `taskset` (util-linux) runs here.
pub fn has_taskset() -> bool {
    static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAS.get_or_init(|| {
        Command::new("taskset")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// A running child with its stdout read line by line on a thread.
pub struct Proc {
    pub name: String,
    pub pid: u32,
    child: Child,
    stdin: Option<ChildStdin>,
    rx: Receiver<String>,
    /// Every line read so far.
    pub log: Vec<String>,
    cursor: usize,
}

/// A command that runs this binary with `args`.
pub fn self_cmd(args: &[String]) -> Result<Command> {
    let exe = std::env::current_exe().context("current_exe")?;
    let mut c = Command::new(exe);
    c.args(args);
    Ok(c)
}

impl Proc {
    /// Starts `cmd` with piped stdin/stdout; stderr goes to ours.
    pub fn spawn(name: &str, mut cmd: Command) -> Result<Proc> {
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().with_context(|| format!("spawn {name}"))?;
        let stdout = child.stdout.take().context("stdout")?;
        let stdin = child.stdin.take();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Proc {
            name: name.to_string(),
            pid: child.id(),
            child,
            stdin,
            rx,
            log: Vec::new(),
            cursor: 0,
        })
    }

    /// Reads what has arrived without waiting.
    pub fn drain(&mut self) {
        while let Ok(l) = self.rx.try_recv() {
            self.log.push(l);
        }
    }

    /// Waits for the next line (after the last one matched) that starts
    /// with `word`; returns its fields after the word.
    pub fn wait_for(&mut self, word: &str, timeout: Duration) -> Result<Vec<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            while self.cursor < self.log.len() {
                let l = &self.log[self.cursor];
                self.cursor += 1;
                let mut f = l.split_whitespace();
                if f.next() == Some(word) {
                    return Ok(f.map(str::to_string).collect());
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(l) => self.log.push(l),
                Err(RecvTimeoutError::Timeout) => {
                    bail!("{}: no '{word}' within {timeout:?}", self.name)
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().ok();
                    bail!("{}: exited ({status:?}) before '{word}'", self.name)
                }
            }
        }
    }

    /// Like `wait_for`, parsing the first field as a number.
    pub fn wait_num(&mut self, word: &str, timeout: Duration) -> Result<u64> {
        let f = self.wait_for(word, timeout)?;
        f.first()
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| anyhow!("{}: '{word}' without a number", self.name))
    }

    /// Sends one line on the child's stdin.
    pub fn send(&mut self, line: &str) -> Result<()> {
        let s = self.stdin.as_mut().context("stdin closed")?;
        writeln!(s, "{line}")?;
        s.flush()?;
        Ok(())
    }

    /// Lines that start with `word`, from the whole log, fields after it.
    pub fn lines(&mut self, word: &str) -> Vec<Vec<String>> {
        self.drain();
        self.log
            .iter()
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                (f.next() == Some(word)).then(|| f.map(str::to_string).collect())
            })
            .collect()
    }

    /// Times (first field) of lines starting with `word`.
    pub fn stamps(&mut self, word: &str) -> Vec<u64> {
        self.lines(word)
            .iter()
            .filter_map(|f| f.first()?.parse().ok())
            .collect()
    }

    /// Closes stdin (the child's cue to exit) and waits up to `timeout`,
    /// then kills it.
    pub fn finish(&mut self, timeout: Duration) {
        self.stdin = None;
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.drain_all();
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.kill();
    }

    /// SIGKILL, then reap; reads the last lines.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.drain_all();
    }

    fn drain_all(&mut self) {
        while let Ok(l) = self.rx.recv_timeout(Duration::from_millis(200)) {
            self.log.push(l);
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
