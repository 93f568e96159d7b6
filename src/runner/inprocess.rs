//! The in-process runner: the controller runs a MigrationRun's worker, or a company's
//! initialization, as a tokio task. For small installs, local clusters and tests.

use super::initializer::InitializationSpec;
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

    /// How many runs (not initializations) this process is running now.
    pub fn runs_at_work(&self) -> usize {
        self.tasks()
            .iter()
            .filter(|(key, t)| !key.starts_with("initialize:") && !t.handle.is_finished())
            .count()
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
        let attempt = w.attempt;
        self.spawn(key, uid, attempt, move |stop| async move {
            work(client, w, stop).await;
        });
    }

    /// The key of a company's initialization among the tasks.
    pub fn initializer_key(s: &InitializationSpec) -> String {
        format!("initialize:{}/{}/{}", s.namespace, s.selection, s.company)
    }

    /// Starts a company's initialization attempt, unless it runs already.
    pub fn start_initializer(&self, client: kube::Client, s: InitializationSpec) {
        let key = Self::initializer_key(&s);
        let attempt = s.attempt.clone();
        self.spawn(key, &attempt, 0, move |_| async move {
            super::initializer::run(client, s).await;
        });
    }

    /// Spawns a task under `key` for the object `uid` and its attempt, unless one runs.
    fn spawn<F, Fut>(&self, key: String, uid: &str, attempt: i32, task: F)
    where
        F: FnOnce(StopSignal) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        if self.alive(&key, uid, attempt) {
            return;
        }
        let stop = StopSignal::default();
        let ended = Arc::new(Mutex::new(None));
        let run = task(stop.clone());
        let handle = tokio::spawn({
            let ended = ended.clone();
            async move {
                run.await;
                *ended.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
            }
        });
        let mut tasks = self.tasks();
        // Forget tasks that returned long ago: their final word is on record.
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
