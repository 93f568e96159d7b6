//! Prometheus metrics of the controller, served on `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

/// A failed reconcile: the kind, and the step that failed (invalid, read, act, status).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    pub kind: String,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

/// The controller's counters and histograms.
#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Family<KindLabel, Counter>,
    pub errors: Family<ErrorLabel, Counter>,
    pub duration: Family<KindLabel, Histogram>,
    pub runs: Family<ResultLabel, Counter>,
    pub tables: Family<ResultLabel, Counter>,
    pub rows: Counter,
    pub registry: Arc<Registry>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cloudmigrate");
        let reconciles = Family::<KindLabel, Counter>::default();
        let errors = Family::<ErrorLabel, Counter>::default();
        let duration = Family::<KindLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 12))
        });
        let runs = Family::<ResultLabel, Counter>::default();
        let tables = Family::<ResultLabel, Counter>::default();
        let rows = Counter::default();
        registry.register("reconciles", "Reconciles, by kind", reconciles.clone());
        registry.register(
            "reconcile_errors",
            "Reconciles that failed, by kind and by the step that failed",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "How long reconciles take, by kind",
            duration.clone(),
        );
        registry.register("runs", "Runs that ended, by result", runs.clone());
        registry.register("tables", "Tables of ended runs, by result", tables.clone());
        registry.register("rows_copied", "Rows copied by ended runs", rows.clone());
        Self {
            reconciles,
            errors,
            duration,
            runs,
            tables,
            rows,
            registry: Arc::new(registry),
        }
    }
}

impl Metrics {
    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    pub fn error(kind: &str, step: &str) -> ErrorLabel {
        ErrorLabel {
            kind: kind.into(),
            error: step.into(),
        }
    }

    pub fn kind(kind: &str) -> KindLabel {
        KindLabel { kind: kind.into() }
    }

    pub fn result(result: &str) -> ResultLabel {
        ResultLabel {
            result: result.into(),
        }
    }
}
