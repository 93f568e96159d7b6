//! End-to-end tests against a real Kubernetes API server, with the real kubectl as the client.
//!
//! `tests/run.sh` starts a local API server (etcd, the upstream apiextensions-apiserver with the
//! built-in objects cloudmigrate uses, and a Job executor) and points `KUBECONFIG` at it; a real
//! cluster works too, where the worker image can be pulled. Each test works in a namespace of its
//! own, so they run in parallel.

mod api_server;
mod builtins;
mod chart;
mod controller;
mod crds;
mod examples;
mod gp;
mod lake;
mod registry;
mod run_rules;
mod scale;
mod tenants;
mod validation;
mod workers;
