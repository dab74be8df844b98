//! One shutdown signal that flows down to every task.
//!
//! `main` creates a [`CancellationToken`], cancels it on SIGTERM or Ctrl-C through
//! [`cancel_on_signal`], and passes it (or child tokens) to the server and background tasks.
//! Tests cancel the same token to stop an app they spawned.

pub use tokio_util::sync::CancellationToken;

/// Cancels `token` when the process receives SIGTERM or SIGINT.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("Shutdown signal received, draining");
        token.cancel();
    });
}

async fn wait_for_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "Cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "Cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
