//! End-to-end tests against a real Kubernetes API server, with the real kubectl as the client.
//!
//! `tests/run.sh` starts a local API server (etcd plus the upstream apiextensions-apiserver) and
//! points `KUBECONFIG` at it; any real cluster works too. Each test works in a namespace of its
//! own, so they run in parallel.

mod api_server;
mod controller;
mod crds;
mod examples;
mod scale;
mod validation;
