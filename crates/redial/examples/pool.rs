//! connman's pools, in redial: create a pool, add connections, find it
//! again by name, send to whichever member is up.
//!
//! Run: `cargo run -p redial --example pool`

use std::error::Error;

use redial::Manager;
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

/// Prints what each of the pool's servers receives.
async fn server(name: &'static str, listener: TcpListener) {
    while let Ok((mut s, _)) = listener.accept().await {
        tokio::spawn(async move {
            let mut buf = [0u8; 256];
            while let Ok(n) = s.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                print!("{name} got: {}", String::from_utf8_lossy(&buf[..n]));
            }
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn Error>> {
    let cm = Manager::new();
    let my_pool = cm.create_pool("myPool")?;
    for name in ["server-a", "server-b", "server-c"] {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        tokio::spawn(server(name, listener));
        my_pool.add_connection(addr, redial::handler().on_data(|_, _| {}))?;
    }

    // Finding a pool, anywhere in the program.
    let pool = cm.get_pool("myPool").ok_or("pool not found")?;
    pool.wait_live(3).await;
    for i in 0..6 {
        pool.send(format!("request {i}\n"))?; // round-robin over live members
    }
    pool.disconnect().await; // flushes every member, then closes
    Ok(())
}
