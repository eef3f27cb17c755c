//! [`Disconnecting`]: the answer of every `disconnect`, awaitable or not.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::Arc;

use crate::shared::{Shared, State};

/// A disconnect that has been requested. The request is made when
/// `disconnect()` returns; awaiting this waits until every connection it
/// covers has closed (`on_close` has run). Dropping it is fine
/// (fire-and-forget).
///
/// ```no_run
/// # async fn f(cm: redial::Manager, conn: redial::Connection) {
/// conn.disconnect();            // fire-and-forget
/// cm.disconnect_all().await;    // wait until everything has closed
/// # }
/// ```
#[derive(Debug)]
pub struct Disconnecting {
    targets: Vec<Arc<Shared>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

impl Disconnecting {
    pub(crate) fn new(targets: Vec<Arc<Shared>>) -> Self {
        Disconnecting { targets }
    }

    /// How many connections this disconnect covers.
    ///
    /// ```no_run
    /// # fn f(cm: redial::Manager) {
    /// println!("closing {}", cm.disconnect_all().len());
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// Whether it covers no connection.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// assert!(redial::Manager::new().disconnect_all().is_empty());
    /// # }
    /// ```
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }
}

impl IntoFuture for Disconnecting {
    type Output = ();
    type IntoFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            for t in self.targets {
                t.wait_state(State::Closed).await;
            }
        })
    }
}
