//! The node peers: connman 1.0.0 from the npm registry and plain `net`.
//!
//! The bench installs connman with npm into a folder of its own (once; it
//! is reused while it holds connman 1.0.0) and writes the client script
//! there. Without node or npm, or when the install fails, the node rows
//! are skipped with a line that says why.

use std::path::Path;
use std::process::{Command, Stdio};

use super::Peer;

/// Where connman is installed and the client script is written.
pub const DIR: &str = "/tmp/redial-bench-node";
const SCRIPT: &str = include_str!("../../node/client.js");

fn version(cmd: &str) -> Option<String> {
    let out = Command::new(cmd).arg("--version").output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn connman_installed() -> bool {
    std::fs::read_to_string(Path::new(DIR).join("node_modules/connman/package.json"))
        .map(|s| s.contains("\"1.0.0\""))
        .unwrap_or(false)
}

/// Installs connman if needed (this needs the registry, so it runs before
/// the harness enters its private network namespace). `Err` says why the
/// node rows will be skipped.
pub fn install() -> Result<(), String> {
    version("node").ok_or("node not found")?;
    if connman_installed() {
        return Ok(());
    }
    version("npm").ok_or("npm not found")?;
    std::fs::create_dir_all(DIR).map_err(|e| format!("mkdir {DIR}: {e}"))?;
    let out = Command::new("npm")
        .args([
            "install",
            "--no-audit",
            "--no-fund",
            "--prefix",
            DIR,
            "connman@1.0.0",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("npm: {e}"))?;
    if !out.status.success() || !connman_installed() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err.lines().last().unwrap_or("").to_string();
        return Err(format!("npm install connman@1.0.0 failed: {last}"));
    }
    Ok(())
}

/// Node's version when the node peers can run (connman installed, script
/// written); otherwise why not.
pub fn ready() -> Result<String, String> {
    let v = version("node").ok_or("node not found")?;
    if !connman_installed() {
        return Err(format!(
            "connman 1.0.0 not installed in {DIR} (npm missing or install failed)"
        ));
    }
    std::fs::write(Path::new(DIR).join("client.js"), SCRIPT)
        .map_err(|e| format!("write client.js: {e}"))?;
    Ok(v)
}

/// The command that runs a node client.
pub fn command(peer: Peer, scenario: &str, args: &[String]) -> Command {
    let mut c = Command::new("node");
    c.arg(Path::new(DIR).join("client.js"))
        .arg(peer.id())
        .arg(scenario)
        .args(args);
    c
}
