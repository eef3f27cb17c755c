//! The test servers, each a child process of its own (one core's worth of
//! work at most, so the client under test has the other core):
//!
//! - `sink`: counts bytes, stamps `done` when all arrived, answers one byte;
//! - `multisink`: counts the bytes of any number of connections on one
//!   event loop thread, stamps `done` when all of them arrived;
//! - `echo`: sends back what it reads (ping-pong);
//! - `recovery`: accepts, sends one byte, holds, then closes with FIN or
//!   RST, or stops listening for a while (reset recovery);
//! - `hold`: accepts and holds any number of connections (scale).
//!
//! Every server exits when its stdin closes, so a dying harness leaves none.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use socket2::{Domain, Socket, Type};

use crate::clock::now_ns;
use crate::kv::Kv;

/// A listener with SO_REUSEADDR (to listen again on the same port at
/// once) and the given backlog.
pub fn listen(addr: SocketAddr, backlog: i32) -> Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())
        .with_context(|| format!("bind {addr}"))?;
    s.listen(backlog)?;
    Ok(s.into())
}

fn exit_on_stdin_eof() {
    std::thread::spawn(|| {
        let mut buf = [0u8; 64];
        let mut stdin = std::io::stdin();
        while let Ok(n) = stdin.read(&mut buf) {
            if n == 0 {
                break;
            }
        }
        std::process::exit(0);
    });
}

fn announce(l: &TcpListener) -> Result<()> {
    println!("listening {} {}", l.local_addr()?.port(), now_ns());
    Ok(())
}

/// Runs the server role `kind`.
pub fn run(kind: &str, kv: &Kv) -> Result<()> {
    exit_on_stdin_eof();
    let addr: SocketAddr = kv.str("addr").unwrap_or("127.0.0.1:0").parse()?;
    match kind {
        "sink" => sink(addr, kv.num("bytes")?),
        "multisink" => multisink(addr, kv.num("bytes")?),
        "echo" => echo(addr),
        "recovery" => recovery(
            addr,
            kv.str("mode")?,
            Duration::from_millis(kv.num("hold_ms")?),
            Duration::from_millis(kv.num("outage_ms")?),
        ),
        "hold" => hold(kv.list("addrs")?),
        other => bail!("unknown server {other}"),
    }
}

fn sink(addr: SocketAddr, want: u64) -> Result<()> {
    thread_per_connection(addr, move |mut s| {
        let mut buf = vec![0u8; 256 * 1024];
        let mut got = 0u64;
        let mut done = false;
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            got += n as u64;
            if !done && got >= want {
                done = true;
                println!("done {} {got}", now_ns());
                let _ = s.write_all(b"k");
            }
        }
        if !done {
            println!("short {got}");
        }
    })
}

/// Listens on `addr`, announces it, and serves every connection on a
/// thread of its own, with TCP_NODELAY on.
fn thread_per_connection(
    addr: SocketAddr,
    serve: impl Fn(TcpStream) + Copy + Send + 'static,
) -> Result<()> {
    let l = listen(addr, 128)?;
    announce(&l)?;
    for s in l.incoming() {
        let s = s?;
        std::thread::spawn(move || {
            let _ = s.set_nodelay(true);
            serve(s);
        });
    }
    Ok(())
}

/// One `current_thread` runtime: a task per connection reads into one
/// shared buffer (only one task runs at a time) and adds to the total.
fn multisink(addr: SocketAddr, want: u64) -> Result<()> {
    let l = listen(addr, 4096)?;
    l.set_nonblocking(true)?;
    announce(&l)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    tokio::task::LocalSet::new().block_on(&rt, multisink_loop(l, want))
}

async fn multisink_loop(l: TcpListener, want: u64) -> Result<()> {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    let l = tokio::net::TcpListener::from_std(l)?;
    let got = Rc::new(Cell::new(0u64));
    let buf = Rc::new(RefCell::new(vec![0u8; 256 * 1024]));
    loop {
        let (s, _) = l.accept().await?;
        let (got, buf) = (got.clone(), buf.clone());
        tokio::task::spawn_local(async move {
            while s.readable().await.is_ok() {
                let r = s.try_read(&mut buf.borrow_mut());
                match r {
                    Ok(0) => return,
                    Ok(n) => {
                        let before = got.get();
                        let now = before + n as u64;
                        got.set(now);
                        if before < want && now >= want {
                            println!("done {} {now}", now_ns());
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        });
    }
}

fn echo(addr: SocketAddr) -> Result<()> {
    thread_per_connection(addr, |mut s| {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 || s.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    })
}

/// Accepted connections alternate: a client's fresh connection (hello
/// byte, hold, then the close under test) and its reconnection (hello
/// byte, then wait until the client hangs up before the next round).
fn recovery(addr: SocketAddr, mode: &str, hold: Duration, outage: Duration) -> Result<()> {
    let mut l = listen(addr, 128)?;
    let addr = l.local_addr()?;
    announce(&l)?;
    let mut fresh = true;
    loop {
        let (mut s, _) = l.accept()?;
        let _ = s.set_nodelay(true);
        let _ = s.write_all(b"h");
        if !fresh {
            wait_eof(&mut s, Duration::from_secs(60));
            fresh = true;
            continue;
        }
        fresh = false;
        std::thread::sleep(hold);
        match mode {
            "fin" => {
                println!("close {}", now_ns());
                drop(s);
            }
            "rst" => {
                socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO))?;
                println!("close {}", now_ns());
                drop(s);
            }
            "relisten" => {
                drop(l);
                println!("close {}", now_ns());
                drop(s);
                std::thread::sleep(outage);
                l = listen(addr, 128)?;
                println!("listen {}", now_ns());
            }
            other => bail!("unknown mode {other}"),
        }
    }
}

fn wait_eof(s: &mut TcpStream, limit: Duration) {
    let _ = s.set_read_timeout(Some(limit));
    let mut buf = [0u8; 512];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
    }
}

/// One accept thread per address; connections are only held (the client
/// side is under test). A backlog of 4096 keeps bursts of connects from
/// being dropped.
fn hold(addrs: Vec<String>) -> Result<()> {
    let mut threads = Vec::new();
    for a in addrs {
        let addr: SocketAddr = a.parse()?;
        let l = listen(addr, 4096)?;
        announce(&l)?;
        threads.push(std::thread::spawn(move || {
            let mut held = Vec::new();
            for s in l.incoming() {
                match s {
                    Ok(s) => held.push(s),
                    Err(e) => {
                        eprintln!("hold server {addr}: accept: {e}");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        }));
    }
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}
