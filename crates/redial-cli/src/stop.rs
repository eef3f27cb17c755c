//! Waiting for the user to stop a long-running command: Ctrl-C (SIGINT)
//! or SIGTERM.

/// Resolves when SIGINT or SIGTERM arrives. If the handlers cannot be
/// installed it never resolves (the default signal action still ends the
/// process).
pub async fn requested() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
