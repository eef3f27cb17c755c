//! `redial watch` on a real terminal (tmux): the table is drawn once and
//! redrawn in place. Skipped when tmux is not installed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::TcpListener;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

/// A private tmux server, killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn capture(&self) -> String {
        self.run(&["capture-pane", "-p", "-S", "-50", "-t", "w"])
    }

    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let screen = self.capture();
            if screen.contains(needle) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "no `{needle}` on screen:\n{screen}"
            );
            sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.run(&["kill-server"]);
    }
}

#[test]
fn live_table_redraws_in_place() {
    if Command::new("tmux").arg("-V").output().is_err() {
        eprintln!("tmux is not installed: skipping the terminal check");
        return;
    }
    let up = TcpListener::bind("127.0.0.1:0").unwrap();
    let down = TcpListener::bind("127.0.0.1:0").unwrap();
    let (up_addr, down_addr) = (up.local_addr().unwrap(), down.local_addr().unwrap());
    drop(down); // nobody listens there
    let tmux = Tmux {
        socket: format!("redial-test-{}", std::process::id()),
    };
    let cmd = format!(
        "{} watch {up_addr} {down_addr} --backoff 100ms..500ms",
        support::BIN
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "w",
        "-x",
        "120",
        "-y",
        "30",
        &cmd,
    ]);
    tmux.run(&["set-option", "-t", "w", "remain-on-exit", "on"]);

    let (_conn, _) = up.accept().unwrap();
    tmux.wait_for("2 connections, 1 up");
    sleep(Duration::from_millis(2200)); // two more redraws
    let screen = tmux.capture();
    assert_eq!(
        screen.matches("redial watch").count(),
        1,
        "drawn more than once:\n{screen}"
    );
    let row = |addr: &str| {
        screen
            .lines()
            .find(|l| l.starts_with(addr))
            .unwrap_or_else(|| panic!("no row for {addr}:\n{screen}"))
            .to_string()
    };
    assert!(row(&up_addr.to_string()).contains("connected"), "{screen}");
    let down_row = row(&down_addr.to_string());
    assert!(
        down_row.contains("backing off") || down_row.contains("connecting"),
        "{screen}"
    );
    assert!(
        down_row.contains(&format!("connect {down_addr}: Conn")),
        "{screen}"
    );
    assert!(screen.lines().all(|l| l.chars().count() <= 120), "{screen}");

    tmux.run(&["send-keys", "-t", "w", "C-c"]);
    let screen = tmux.wait_for("disconnected.");
    assert_eq!(screen.matches("redial watch").count(), 1, "{screen}");
    assert_eq!(screen.matches(" closed ").count(), 2, "{screen}");
    println!("{screen}");
}
