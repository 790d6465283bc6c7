//! How `meshscope serve` is told to stop: the process's stop signals, and a one-shot
//! trigger that stops its parts one after another.

use std::future::Future;

use tokio::sync::watch;
use tracing::warn;

/// Resolves on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(error) => {
                    warn!(%error, "cannot listen for SIGTERM; only SIGINT stops meshscope");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// A one-shot stop signal that any number of tasks can wait on.
pub(crate) struct Trigger {
    sender: watch::Sender<bool>,
}

impl Trigger {
    pub(crate) fn new() -> Self {
        Self {
            sender: watch::channel(false).0,
        }
    }

    /// Fires the trigger: every wait, past and future, resolves.
    pub(crate) fn fire(&self) {
        self.sender.send_replace(true);
    }

    /// Resolves once the trigger has fired.
    pub(crate) fn wait(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut receiver = self.sender.subscribe();
        async move {
            // An error means the trigger is gone, which only happens on exit: stop too.
            let _ = receiver.wait_for(|fired| *fired).await;
        }
    }
}
