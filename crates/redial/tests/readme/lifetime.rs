use std::time::Duration;

use redial::{Endpoint, Options};
use tokio::io::AsyncReadExt;

/// A server on `addr` that reads every connection to its end.
async fn server(addr: &str) -> std::io::Result<std::net::SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let at = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(1..) = s.read(&mut buf).await {}
            });
        }
    });
    Ok(at)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (a, b) = (server("127.0.0.1:0").await?, server("127.0.0.1:0").await?);
    // A port for a third server, where nothing listens yet.
    let late = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;

    // Every member dials the same three addresses, as for a name with three
    // records: each starts at its own and moves on by one at every attempt.
    let fleet = Endpoint::any([a, b, late])?;
    let opts = Options::new().max_lifetime(Duration::from_secs(1)); // ± 10 %
    let cm = redial::Manager::new();
    let pool = cm.create_pool("fleet")?;
    for _ in 0..9 {
        pool.add_connection_with(fleet.clone(), redial::handler(), opts.clone())?;
    }
    pool.wait_live(9).await; // all on the first two servers

    server(&late.to_string()).await?; // the third one starts
    tokio::time::sleep(Duration::from_millis(1500)).await; // each member replaced once
    let on_late = pool
        .connections()
        .iter()
        .filter(|c| c.socket().and_then(|s| s.peer_addr()) == Some(late))
        .count();
    println!("{on_late} of 9 members on the late server"); // 3 of 9
    pool.disconnect().await;
    Ok(())
}
