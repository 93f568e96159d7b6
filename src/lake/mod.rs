//! The data lake target: Delta Lake tables of Parquet data files and a transaction log, which
//! Fabric, Synapse, Databricks, Spark and DuckDB read directly. A run (`run`) writes each
//! table (`table`) as key-sorted files (`files`, of the columns in `columns`, cut by the keys
//! of `keys`) into an object store (`store`), and commits them in the table's log (`log`).

pub mod columns;
pub mod files;
pub mod keys;
pub mod log;
pub mod run;
pub mod store;
pub mod table;

/// Why a schedule with a data lake target starts no run in the cluster yet: `run -f` writes
/// lakes; the controller's runs, grants and probes know database targets only.
pub const NOT_IN_CLUSTER: (&str, &str) = (
    "LakeTargetNotInCluster",
    "a data lake target is written by `cloudmigrate run -f` for now: the controller does not \
     start runs into a lake yet",
);
