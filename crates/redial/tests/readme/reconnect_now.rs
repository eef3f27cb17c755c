use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A port where nothing listens yet.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let slow = redial::Backoff::new(Duration::from_secs(30), 2.0, Duration::from_secs(120))?;
    let cm = redial::Manager::new();
    let conn = cm.connect_with(("127.0.0.1", port), redial::handler(), redial::Options::new().backoff(slow))?;
    while conn.stats().failed_attempts == 0 {
        std::thread::sleep(Duration::from_millis(10)); // refused: now waiting about 30 s
    }

    let _server = std::net::TcpListener::bind(("127.0.0.1", port))?; // the network is back
    cm.reconnect_now(); // every connection backing off tries at once (under the cap)
    conn.wait_connected_blocking(Duration::from_secs(5))?;
    println!("connected without waiting out the backoff");
    cm.disconnect_all().wait_blocking()?;
    Ok(())
}
