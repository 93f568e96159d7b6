//! The replication engine against real databases: PostgreSQL and MariaDB servers started by
//! `tests/run.sh`, and SQLite files.

mod cli;
mod companies;
mod databases;
mod estate;
mod failures;
mod fidelity;
mod gp;
mod identifiers;
mod incremental;
mod initialization;
mod lake;
mod reliability;
mod reset;
mod runtime_key;
mod standing;
mod transport;
mod users;
