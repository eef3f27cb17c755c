//! connman's "finding your socket", in redial: ask the manager for the
//! connection to an endpoint, then use its live socket directly.
//!
//! Run: `cargo run -p redial --example finding`

use std::error::Error;

use redial::Manager;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });

    let cm = Manager::new();
    cm.connect(addr, redial::handler())?;
    cm.connect(addr, redial::handler())?; // a second one to the same place is kept too

    // Like connman's cm.getConnection(port, host): the oldest connection.
    let conn = cm.get_connection(addr).ok_or("no connection")?;
    let sock = conn.wait_connected().await?;
    let tcp = sock.tcp().ok_or("not a TCP socket")?;
    println!("connection #{} to {}", conn.id(), conn.endpoint());
    println!(
        "  local {:?} -> peer {:?}",
        tcp.local_addr()?,
        tcp.peer_addr()?
    );
    println!("  nodelay {}", tcp.nodelay()?);
    println!("  keepalive {}", sock.sock_ref().keepalive()?);
    println!(
        "all connections to {addr}: {}",
        cm.connections_to(addr).len()
    );

    cm.disconnect_all().await;
    Ok(())
}
