//! The operator: reconcilers for MigrationSchedule and MigrationRun, and the process that runs
//! them (`cloudmigrate controller`).

pub mod clock;
pub mod conditions;
pub mod cron;
pub mod schedule_decide;
pub mod run_decide;
