use std::sync::mpsc;
use std::time::Duration;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::var("REDIS").unwrap_or_else(|_| "127.0.0.1:6379".into());
    let (replies, reply) = mpsc::channel();

    let cm = redial::Manager::new();
    cm.connect(&addr, redial::handler()
        .on_connect(|sock| { let _ = sock.send("PING\r\n"); })
        .on_data(move |_sock, data| { let _ = replies.send(data.to_vec()); }))?;

    // Callbacks run on the manager's runtime; a channel brings data back.
    let pong = reply.recv_timeout(Duration::from_secs(5))?;
    print!("{}", String::from_utf8_lossy(&pong));  // +PONG
    cm.disconnect_all().wait_blocking()?;
    Ok(())
}
