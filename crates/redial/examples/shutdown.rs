//! connman's "shutting things down", in redial: closing one connection, a
//! pool, and everything. A closed connection never reconnects, and what was
//! queued is flushed before the FIN.
//!
//! Run: `cargo run -p redial --example shutdown`

use std::error::Error;

use redial::Manager;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, peer)) = listener.accept().await {
            tokio::spawn(async move {
                let mut all = Vec::new();
                let _ = s.read_to_end(&mut all).await;
                println!("server: {peer} sent {} bytes, then closed", all.len());
            });
        }
    });

    let cm = Manager::new();
    let closing = |name: &'static str| {
        redial::handler()
            .on_data(|_, _| {})
            .on_close(move |c| println!("{name}: {}", c.reason()))
    };
    let single = cm.connect(addr, closing("single"))?;
    let pool = cm.create_pool("myConnectionPool")?;
    pool.add_connection(addr, closing("pool member 1"))?;
    pool.add_connection(addr, closing("pool member 2"))?;
    cm.connect(addr, closing("another"))?;
    single.wait_connected().await?;
    pool.wait_live(2).await;

    // Close an individual connection (its socket's disconnect() does the same).
    single.send(vec![b'x'; 100_000])?;
    single.disconnect().await;

    // Close all connections in a pool.
    cm.get_pool("myConnectionPool")
        .ok_or("no pool")?
        .disconnect()
        .await;

    // Close everything the manager still has.
    cm.disconnect_all().await;
    println!("open connections: {}", cm.connections().len());
    Ok(())
}
