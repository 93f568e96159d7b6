//! Where the API meets the engine: a MigrationSchedule (and a run's type and companies) into
//! the engine's configuration, and the engine's per-table reports back into status entries.
//! The runners and `cloudmigrate run -f` all go through here.

use crate::api::run::{LakeTableStatus, RunType, TableStatus};
use crate::api::schedule::MigrationScheduleSpec;
use crate::db::ConnectSpec;
use crate::engine::plan::PlanOptions;
use crate::engine::report::TableReport;
use crate::engine::{self, RunConfig, StopSignal};

/// The engine's configuration for a run of a schedule, with its two connections (their
/// passwords and TLS settled by the caller, never read here). The target may be created when
/// it is a SQLite file.
pub fn engine_config(
    spec: &MigrationScheduleSpec,
    companies: Option<Vec<String>>,
    (source, target): (ConnectSpec, ConnectSpec),
    run_id: String,
    run_type: RunType,
) -> RunConfig {
    RunConfig {
        run_id,
        source: ConnectSpec {
            max_connections: 1,
            create: false,
            ..source
        },
        target: ConnectSpec {
            max_connections: 1,
            create: true,
            ..target
        },
        plan: plan_options(spec, companies),
        create_missing_tables: spec.target.create_missing_tables,
        parallelism: spec.runtime.parallelism.max(1) as usize,
        run_type,
        retention: engine::tracking::DEFAULT_RETENTION,
        stop: StopSignal::default(),
        share: None,
    }
}

/// The lake a schedule's target names, with its key (settled by the caller); None when the
/// target is a database.
pub fn lake_target(
    spec: &MigrationScheduleSpec,
    secret: Option<String>,
) -> Option<crate::lake::store::LakeTarget> {
    let target = &spec.target;
    if !crate::lake::store::is_lake_url(&target.url) {
        return None;
    }
    let options = target.lake.clone().unwrap_or_default();
    Some(crate::lake::store::LakeTarget {
        url: target.url.clone(),
        account: options.account,
        access_key_id: options.access_key_id,
        endpoint: options.endpoint,
        region: options.region,
        secret,
    })
}

/// The configuration of a run of a schedule into its lake, with the source's connection and
/// the lake (see `lake_target`).
pub fn lake_run_config(
    spec: &MigrationScheduleSpec,
    companies: Option<Vec<String>>,
    (source, lake): (ConnectSpec, crate::lake::store::LakeTarget),
    run_id: String,
    run_type: RunType,
) -> crate::lake::run::LakeRunConfig {
    crate::lake::run::LakeRunConfig {
        run_id,
        source: ConnectSpec {
            max_connections: 1,
            create: false,
            ..source
        },
        lake,
        plan: plan_options(spec, companies),
        parallelism: spec.runtime.parallelism.max(1) as usize,
        run_type,
        retention: engine::tracking::DEFAULT_RETENTION,
        stop: StopSignal::default(),
        rows_per_file: crate::lake::files::ROWS_PER_FILE,
    }
}

/// What a run of a schedule copies: its product, its table patterns and `companies` (None:
/// all).
pub fn plan_options(spec: &MigrationScheduleSpec, companies: Option<Vec<String>>) -> PlanOptions {
    PlanOptions {
        product: spec.product,
        include: spec.tables.include.clone(),
        exclude: spec.tables.exclude.clone(),
        companies,
        target: None,
    }
}

/// A table's result as the run's status lists it.
pub fn table_status(r: &TableReport) -> TableStatus {
    let changes = r.changes;
    TableStatus {
        company: r.company.clone(),
        table: r.table.clone(),
        result: r.result,
        mode: Some(r.mode),
        full_reason: r.full_reason.clone(),
        rows: r.rows as i64,
        inserted: changes.map(|c| c.0 as i64),
        updated: changes.map(|c| c.1 as i64),
        deleted: changes.map(|c| c.2 as i64),
        bytes: (r.bytes > 0).then_some(r.bytes as i64),
        duration_ms: (!r.duration.is_zero()).then_some(r.duration.as_millis() as i64),
        message: r.message.clone(),
        guidance: r.guidance.clone(),
        lake: r.lake.as_ref().map(|l| LakeTableStatus {
            location: l.location.clone(),
            version: l.version.map(|v| v as i64),
            files: l.files as i64,
            rows: l.rows as i64,
            files_added: l.added as i64,
            files_removed: l.removed as i64,
        }),
    }
}
