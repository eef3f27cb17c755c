//! The process-wide manager and the module-level functions that act on it,
//! as connman's module did.

use std::sync::OnceLock;

use crate::connection::Connection;
use crate::disconnect::Disconnecting;
use crate::endpoint::ToEndpoint;
use crate::error::{ConnectError, PoolError};
use crate::handler::Handler;
use crate::manager::Manager;
use crate::pool::Pool;

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
/// ```no_run
/// let conn = redial::connect("127.0.0.1:11211", redial::handler().on_data(|_, _| {}))?;
/// # let _ = conn; Ok::<(), redial::ConnectError>(())
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
