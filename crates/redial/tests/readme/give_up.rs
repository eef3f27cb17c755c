use std::io::{Error, ErrorKind};
use redial::{Handler, Retry, Socket};

struct Client;
impl Handler for Client {
    fn on_data(&mut self, _: &Socket, _: &[u8]) {}
    fn on_connect_failed(&mut self, err: &Error, _attempt: u32) -> Retry {
        match err.kind() {
            // Retrying cannot fix these here (a rejected certificate comes
            // as InvalidData, feature `tls`): close with the error.
            ErrorKind::ConnectionRefused | ErrorKind::InvalidData => Retry::GiveUp,
            _ => Retry::OnSchedule,
        }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A port where nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let cm = redial::Manager::new();
    let conn = cm.connect(("127.0.0.1", port), Client)?;
    let err = conn.wait_connected_blocking(std::time::Duration::from_secs(10)).unwrap_err();
    println!("{err}"); // connection closed for good: gave up on attempt 1: ...
    Ok(())
}
