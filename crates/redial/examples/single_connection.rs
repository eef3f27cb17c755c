//! connman's "connect to a single resource", in redial: a connection whose
//! `on_reset` hands back a new starting point (`Resume::With`), against a
//! small line server started here that drops the connection now and then.
//!
//! Run: `cargo run -p redial --example single_connection`

use std::error::Error;
use std::time::Duration;

use redial::{Handler, Manager, Reset, Resume, Socket};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Business logic that may involve writing to the socket.
fn use_socket(sock: &Socket) {
    for _ in 0..3 {
        let _ = sock.send("ping\r\n");
    }
}

struct App;

impl Handler for App {
    // Called when the connection is established.
    fn on_connect(&mut self, sock: &Socket) {
        println!("connected (connection #{})", sock.generation());
        use_socket(sock);
    }

    // Called whenever there is new data to read.
    fn on_data(&mut self, _sock: &Socket, data: &[u8]) {
        print!("server says: {}", String::from_utf8_lossy(data));
    }

    // Cleanup after a lost connection, and a new starting point.
    fn on_reset(&mut self, reset: &Reset) -> Resume {
        println!("reset: {} after {:?}", reset.reason(), reset.uptime());
        Resume::with(|sock: &Socket| {
            println!("resumed (connection #{})", sock.generation());
            use_socket(sock);
        })
    }
}

/// Answers each line with "pong", and hangs up after 3 lines.
async fn server(listener: TcpListener) {
    while let Ok((mut s, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut buf = [0u8; 256];
            let mut lines = 0;
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                lines += buf[..n].iter().filter(|&&b| b == b'\n').count();
                if s.write_all(b"pong\r\n").await.is_err() || lines >= 3 {
                    break;
                }
            }
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(server(listener));

    let cm = Manager::new();
    let conn = cm.connect(addr, App)?;
    tokio::time::sleep(Duration::from_millis(800)).await;
    println!("stats: {:?}", conn.stats());
    conn.disconnect().await;
    Ok(())
}
