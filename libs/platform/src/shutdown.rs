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

/// The tasks a service runs beside its HTTP server, stopped in a fixed order once the server
/// has drained: each stage is cancelled and awaited before the next, so that, for example,
/// consumers stop before the outbox relay (whatever they committed is still published) and
/// nothing is left running, or forgotten, when `run` returns.
///
/// ```
/// # async fn demo() {
/// use comptoir_platform::shutdown::Stages;
/// let mut stages = Stages::new(["consumers", "background", "outbox relay"]);
/// stages.spawn("consumers", |stop| async move { stop.cancelled().await });
/// stages.spawn("outbox relay", |stop| async move { stop.cancelled().await });
/// stages.stop().await; // consumers, then background, then the relay
/// # }
/// ```
#[derive(Debug)]
pub struct Stages {
    stages: Vec<Stage>,
}

#[derive(Debug)]
struct Stage {
    name: &'static str,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Stages {
    /// Stages in the order they will be stopped.
    pub fn new(order: impl IntoIterator<Item = &'static str>) -> Self {
        Self {
            stages: order
                .into_iter()
                .map(|name| Stage {
                    name,
                    stop: CancellationToken::new(),
                    tasks: Vec::new(),
                })
                .collect(),
        }
    }

    /// Runs `task(stop)` in `stage`; the task must return once `stop` is cancelled.
    ///
    /// # Panics
    /// On a stage name not given to [`Stages::new`]: a programming error, caught by any test
    /// that starts the service.
    pub fn spawn<F, Fut>(&mut self, stage: &'static str, task: F)
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let stage = self
            .stages
            .iter_mut()
            .find(|s| s.name == stage)
            .unwrap_or_else(|| panic!("no shutdown stage named {stage:?}"));
        stage.tasks.push(tokio::spawn(task(stage.stop.clone())));
    }

    /// Stops every stage in order, waiting for each one's tasks; a task that panicked is
    /// logged, and the others are still stopped.
    pub async fn stop(self) {
        for stage in self.stages {
            stage.stop.cancel();
            for task in stage.tasks {
                if let Err(error) = task.await {
                    tracing::error!(stage = stage.name, %error, "Task failed");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[tokio::test]
    async fn stages_stop_in_order_and_every_task_is_awaited() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut stages = Stages::new(["consumers", "background", "relay"]);
        for (stage, name) in [
            ("relay", "relay"),
            ("consumers", "export"),
            ("consumers", "erasure"),
            ("background", "sweep"),
        ] {
            let log = Arc::clone(&log);
            stages.spawn(stage, move |stop| async move {
                stop.cancelled().await;
                // Yield so a stage that did not wait for this one would overtake it.
                tokio::task::yield_now().await;
                log.lock().expect("log").push(name);
            });
        }
        // A panicking task is logged; the rest still stop.
        stages.spawn("background", |_| async { panic!("boom") });
        stages.stop().await;
        let log = log.lock().expect("log").clone();
        assert_eq!(log.len(), 4);
        assert_eq!(&log[3], &"relay", "the relay stops last: {log:?}");
        assert_eq!(&log[2], &"sweep", "{log:?}");
    }

    #[test]
    #[should_panic(expected = "no shutdown stage named \"relya\"")]
    fn an_unknown_stage_is_a_programming_error() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let mut stages = Stages::new(["relay"]);
            stages.spawn("relya", |stop| async move { stop.cancelled().await });
        });
    }
}
