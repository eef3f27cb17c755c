//! The process-wide manager and the module-level functions that act on it,
//! as connman's module did.

use std::sync::OnceLock;

use crate::endpoint::ToEndpoint;
use crate::error::{ConnectError, PoolError};
use crate::handle::connection::Connection;
use crate::handle::disconnect::Disconnecting;
use crate::handle::manager::Manager;
use crate::handle::pool::Pool;
use crate::handler::Handler;

static GLOBAL: OnceLock<Manager> = OnceLock::new();

/// The process-wide manager. It always runs on a runtime of its own, so it
/// keeps working whichever runtime (if any) first touched it.
///
/// ```
/// let a = redial::global();
/// let b = redial::global();
/// assert!(std::ptr::eq(a, b));
/// ```
pub fn global() -> &'static Manager {
    GLOBAL.get_or_init(|| Manager::builder().own_runtime(true).build())
}

/// [`Manager::connect`] on the [`global`] manager.
///
/// ```
/// # let server = std::net::TcpListener::bind("127.0.0.1:0")?;
/// # let echo = server.local_addr()?.to_string();
/// # std::thread::spawn(move || for s in server.incoming().flatten() { std::thread::spawn(move || std::io::copy(&mut &s, &mut &s)); });
/// let addr = "127.0.0.1:11211";
/// # let addr = echo.as_str();
/// let conn = redial::connect(addr, redial::handler().on_data(|_, _| {}))?;
/// conn.wait_connected_blocking(std::time::Duration::from_secs(10))?;
/// redial::disconnect_all().wait_blocking()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn connect<H: Handler>(
    endpoint: impl ToEndpoint,
    handler: H,
) -> Result<Connection, ConnectError> {
    global().connect(endpoint, handler)
}

/// [`Manager::create_pool`] on the [`global`] manager.
///
/// ```
/// let pool = redial::create_pool("doc-global-pool")?;
/// assert_eq!(pool.name(), "doc-global-pool");
/// # Ok::<(), redial::PoolError>(())
/// ```
pub fn create_pool(name: &str) -> Result<Pool, PoolError> {
    global().create_pool(name)
}

/// [`Manager::get_pool`] on the [`global`] manager.
///
/// ```
/// assert!(redial::get_pool("no-such-pool").is_none());
/// ```
pub fn get_pool(name: &str) -> Option<Pool> {
    global().get_pool(name)
}

/// [`Manager::get_connection`] on the [`global`] manager.
///
/// ```
/// assert!(redial::get_connection("127.0.0.1:1").is_none());
/// ```
pub fn get_connection(endpoint: impl ToEndpoint) -> Option<Connection> {
    global().get_connection(endpoint)
}

/// [`Manager::disconnect_all`] on the [`global`] manager.
///
/// ```
/// redial::disconnect_all(); // fire-and-forget
/// ```
pub fn disconnect_all() -> Disconnecting {
    global().disconnect_all()
}
