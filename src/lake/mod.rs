//! The data lake target (#26, being built): Delta Lake tables of Parquet data files and a
//! transaction log, which Fabric, Synapse, Databricks, Spark and DuckDB read directly. So far
//! only the log (`log`) exists; nothing in a run writes a lake yet.

pub mod log;
