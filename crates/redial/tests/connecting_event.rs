//! `EventKind::Connecting` marks the start of a connect attempt, so the
//! time from it to `Connected` is how long the attempt took.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use redial::{EventKind, Manager, Options};

#[tokio::test]
async fn connecting_is_emitted_before_the_attempt_connects_its_socket() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cm = Manager::new();
    let mut events = cm.events();
    // The socket hook runs inside the attempt, right before connect().
    let hooked: Arc<Mutex<Option<Instant>>> = Arc::default();
    let h = hooked.clone();
    let opts = Options::new().configure_socket(move |_| {
        h.lock().unwrap().get_or_insert_with(Instant::now);
        Ok(())
    });
    let conn = cm.connect_with(addr, redial::handler(), opts).unwrap();
    let (_accepted, _) = listener.accept().await.unwrap();
    conn.wait_connected().await.unwrap();
    let mut connecting = None;
    let mut connected = None;
    while connected.is_none() {
        let e = events.recv().await.expect("events end before Connected");
        match e.kind {
            EventKind::Connecting { attempt } => connecting = Some((e.at, attempt)),
            EventKind::Connected { .. } => connected = Some(e.at),
            _ => {}
        }
    }
    let (started, attempt) = connecting.expect("no Connecting before Connected");
    let hook = hooked.lock().unwrap().expect("the socket hook never ran");
    assert_eq!(attempt, 1);
    assert!(
        started <= hook,
        "Connecting stamped {:?} after the attempt's socket hook ran: it marks the attempt's end, not its start",
        started - hook
    );
    assert!(started <= connected.unwrap());
}
