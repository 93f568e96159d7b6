//! The data lake target: Delta Lake tables of Parquet data files and a transaction log, which
//! Fabric, Synapse, Databricks, Spark and DuckDB read directly. A run (`run`) writes each
//! table (`table`) as key-sorted files (`files`, of the columns in `columns`, cut by the keys
//! of `keys`) into an object store (`store`), and commits them in the table's log (`log`),
//! with a checkpoint of it every few versions (`checkpoint`).

pub mod checkpoint;
pub mod columns;
pub mod files;
pub mod keys;
pub mod log;
pub mod run;
pub mod store;
pub mod table;

/// The condition reason of an action on a target database (a CloudReset, a key rotation, a
/// company's initialization, a user mapping) whose schedule writes a data lake.
pub const NOT_FOR_LAKE: &str = "NotForLakeTarget";
