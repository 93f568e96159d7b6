//! What every reconcile shares: the API client, the in-process runner, metrics and events.

use super::metrics::Metrics;
use super::schedule_decide::Note;
use crate::runner::inprocess::InProcess;
use kube::Resource;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// Field manager of the controller's own writes.
pub const MANAGER: &str = "cloudmigrate-controller";

#[derive(Clone)]
pub struct Context {
    pub client: kube::Client,
    pub inprocess: InProcess,
    pub metrics: Metrics,
    pub recorder: Recorder,
}

impl Context {
    pub fn new(client: kube::Client, metrics: Metrics, instance: Option<String>) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: MANAGER.into(),
                instance,
            },
        );
        Self {
            client,
            inprocess: InProcess::default(),
            metrics,
            recorder,
        }
    }

    /// Runs one reconcile of `kind`, counting it, its time and its failure in the metrics.
    pub async fn measured<T, E>(
        &self,
        kind: &str,
        reconcile: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, E> {
        let started = std::time::Instant::now();
        let kind = super::metrics::Metrics::kind(kind);
        self.metrics.reconciles.get_or_create(&kind).inc();
        let result = reconcile.await;
        self.metrics
            .duration
            .get_or_create(&kind)
            .observe(started.elapsed().as_secs_f64());
        if result.is_err() {
            self.metrics.errors.get_or_create(&kind).inc();
        }
        result
    }

    /// Records events about an object. A cluster without the events API (the test API server
    /// serves custom resources only) gets them in the log instead.
    pub async fn publish<K: Resource<DynamicType = ()>>(&self, obj: &K, notes: &[Note]) {
        let reference = obj.object_ref(&());
        for n in notes {
            let event = Event {
                type_: if n.warning {
                    EventType::Warning
                } else {
                    EventType::Normal
                },
                reason: n.reason.into(),
                note: Some(n.message.chars().take(1000).collect()),
                action: n.reason.into(),
                secondary: None,
            };
            if let Err(e) = self.recorder.publish(&event, &reference).await {
                tracing::debug!(error = %e, "recording an event failed");
            }
            tracing::info!(
                object = %format!("{}/{}", reference.namespace.as_deref().unwrap_or_default(), reference.name.as_deref().unwrap_or_default()),
                kind = reference.kind.as_deref().unwrap_or_default(),
                reason = n.reason,
                "{}",
                n.message
            );
        }
    }
}
