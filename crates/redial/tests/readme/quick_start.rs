use std::time::Duration;

use redial::{Handler, Manager, Reset, Resume, Socket};

struct Memcache;

impl Handler for Memcache {
    // A connection is up: write to it, keep the socket, set options.
    fn on_connect(&mut self, sock: &Socket) {
        let _ = sock.send("version\r\n");
    }
    // Data arrived.
    fn on_data(&mut self, _sock: &Socket, data: &[u8]) {
        print!("{}", String::from_utf8_lossy(data));
    }
    // The connection was lost: clean up, then say how to resume.
    fn on_reset(&mut self, reset: &Reset) -> Resume {
        eprintln!("lost: {} ({} bytes handed back)", reset.reason(), reset.unsent().len());
        Resume::with(|sock| { let _ = sock.send("version\r\n"); }) // a new starting point
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Where memcached listens (the README's test points this at a server of its own).
    let addr = std::env::var("MEMCACHED").unwrap_or_else(|_| "127.0.0.1:11211".into());

    let cm = Manager::new();                       // inside tokio: uses it; outside: owns a small runtime
    let conn = cm.connect(&addr, Memcache)?;

    let pool = cm.create_pool("myPool")?;          // an error if the name is taken
    pool.add_connection(&addr, Memcache)?;

    let again = cm.get_connection(&addr);          // finding your connection
    let same_pool = cm.get_pool("myPool");         // finding a pool
    assert!(again.is_some() && same_pool.is_some());

    // Connecting takes a moment, and by default a send while not connected
    // is refused (with its bytes): wait first.
    conn.wait_connected_blocking(Duration::from_secs(5))?;
    conn.send("stats\r\n")?;                       // queue without blocking
    conn.disconnect();                             // one connection: flush, FIN, never reconnect
    pool.disconnect();                             // a pool
    cm.disconnect_all().wait_blocking()?;           // everything, and wait for it (`.await` in async code)
    Ok(())
}
