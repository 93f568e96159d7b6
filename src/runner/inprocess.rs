//! The in-process runner: the controller runs a MigrationRun's worker as a tokio task. For small
//! installs, local clusters and tests.

use super::{FINAL_WORD, WorkerSpec, work};
use crate::engine::StopSignal;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A worker task of this controller process.
struct Task {
    uid: String,
    attempt: i32,
    stop: StopSignal,
    handle: tokio::task::JoinHandle<()>,
    /// When the worker returned. Its last status write may take a moment to reach the
    /// controller's cache; until then it still counts as alive.
    ended: Arc<Mutex<Option<std::time::Instant>>>,
}

impl Task {
    /// The worker returned long enough ago that its last status write has arrived.
    fn gone(&self) -> bool {
        let ended = *self.ended.lock().unwrap_or_else(|p| p.into_inner());
        ended.is_some_and(|e| e.elapsed() >= FINAL_WORD)
    }
}

/// The runs this controller process is running, by namespace/name.
#[derive(Clone, Default)]
pub struct InProcess {
    tasks: Arc<Mutex<HashMap<String, Task>>>,
}

impl InProcess {
    fn tasks(&self) -> std::sync::MutexGuard<'_, HashMap<String, Task>> {
        // A panic while the lock is held leaves the map intact.
        self.tasks.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether this process runs the attempt of the run (same object, same attempt).
    pub fn alive(&self, key: &str, uid: &str, attempt: i32) -> bool {
        self.tasks()
            .get(key)
            .is_some_and(|t| t.uid == uid && t.attempt == attempt && !t.gone())
    }

    /// Starts the worker of an attempt, unless it runs already.
    pub fn start(&self, client: kube::Client, uid: &str, w: WorkerSpec) {
        let key = format!("{}/{}", w.namespace, w.name);
        if self.alive(&key, uid, w.attempt) {
            return;
        }
        let stop = StopSignal::default();
        let attempt = w.attempt;
        let ended = Arc::new(Mutex::new(None));
        let handle = tokio::spawn({
            let stop = stop.clone();
            let ended = ended.clone();
            async move {
                work(client, w, stop).await;
                *ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
            }
        });
        let mut tasks = self.tasks();
        // Forget runs whose workers returned long ago: their final word is in their status.
        tasks.retain(|_, t| !t.gone());
        tasks.insert(
            key,
            Task {
                uid: uid.to_string(),
                attempt,
                stop,
                handle,
                ended,
            },
        );
    }

    /// Tells a run's worker to stop after the tables in progress.
    pub fn stop(&self, key: &str) {
        if let Some(t) = self.tasks().get(key) {
            t.stop.stop();
        }
    }

    /// Stops every worker (the controller is shutting down) and waits for them.
    pub async fn shutdown(&self) {
        let handles: Vec<_> = self
            .tasks()
            .drain()
            .map(|(_, t)| {
                t.stop.stop();
                t.handle
            })
            .collect();
        for h in handles {
            let _ = h.await;
        }
    }
}
