//! cloudmigrate: a Kubernetes operator that migrates an on-premises ERP database (Business
//! Central, NAV or GP style) into a cloud tenant database and keeps it in step until switch-over.

// A reconcile's future nests the runner's and the database layer's async functions deeply:
// the release build's layout of `controller::companies::reconcile` needs more than the
// default depth of 128.
#![recursion_limit = "256"]

pub mod api;
pub mod clock;
pub mod console;
pub mod controller;
pub mod convert;
pub mod db;
pub mod demo;
pub mod engine;
#[cfg(test)]
pub mod fixtures;
#[cfg(test)]
mod house;
pub mod lake;
pub mod logins;
pub mod manifest;
pub mod ops;
pub mod registry;
pub mod runner;
pub mod vocabulary;
