//! Running without a cluster: a MigrationSchedule manifest (and optionally its
//! CompanySelection) read from a file, with passwords from the environment or files.

use crate::api::common::SecretKeyRef;
use crate::api::{CompanySelection, MigrationSchedule};
use crate::db::ConnectSpec;
use crate::engine::RunConfig;
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Where a password comes from outside a cluster.
#[derive(Clone, Debug, Default)]
pub struct PasswordSource {
    /// The name of an environment variable, for example `CLOUDMIGRATE_SOURCE_PASSWORD`.
    pub env: String,
    /// A file whose first line is the password.
    pub file: Option<PathBuf>,
}

impl PasswordSource {
    /// The password given outside a cluster: from the file, else the environment variable.
    pub fn given(&self, side: &str) -> Result<Option<String>, String> {
        if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("reading the {side} password file {}: {e}", path.display()))?;
            return Ok(Some(text.lines().next().unwrap_or_default().to_string()));
        }
        Ok(std::env::var(&self.env).ok())
    }

    fn read(&self, side: &str, secret: Option<&SecretKeyRef>) -> Result<Option<String>, String> {
        if let Some(pw) = self.given(side)? {
            return Ok(Some(pw));
        }
        match secret {
            Some(s) => Err(format!(
                "spec.{side}.passwordSecretRef names the Secret {:?} (key {:?}), which only exists in a \
                 cluster: give the password with the environment variable {} or --{side}-password-file",
                s.name, s.key, self.env
            )),
            None => Ok(None),
        }
    }
}

#[derive(Deserialize)]
struct Head {
    kind: Option<String>,
}

/// The schedule of a manifest file, and the companies its CompanySelection picks.
pub struct Manifest {
    pub schedule: MigrationSchedule,
    pub companies: Option<Vec<String>>,
    /// The CompanySelection's initialization steps.
    pub steps: Vec<crate::api::companies::InitializationStep>,
}

/// Reads a manifest: a MigrationSchedule, optionally followed by a CompanySelection.
pub fn load(path: &Path) -> Result<Manifest, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    parse(&text, path)
}

/// Reads a manifest's text; `path` names it in errors.
pub fn parse(text: &str, path: &Path) -> Result<Manifest, String> {
    let mut schedule = None;
    let mut companies = None;
    let mut steps = vec![];
    for doc in text
        .split("\n---")
        .map(str::trim)
        .filter(|d| !d.is_empty() && *d != "---")
    {
        let doc = doc.trim_start_matches("---");
        let head: Head = serde_saphyr::from_str(doc)
            .map_err(|e| format!("{}: not YAML: {e}", path.display()))?;
        match head.kind.as_deref() {
            Some("MigrationSchedule") => {
                schedule = Some(
                    serde_saphyr::from_str::<MigrationSchedule>(doc).map_err(|e| {
                        format!("{}: invalid MigrationSchedule: {e}", path.display())
                    })?,
                )
            }
            Some("CompanySelection") => {
                let sel: CompanySelection = serde_saphyr::from_str(doc)
                    .map_err(|e| format!("{}: invalid CompanySelection: {e}", path.display()))?;
                steps = sel.spec.initialization_steps;
                companies = Some(
                    sel.spec
                        .companies
                        .into_iter()
                        .filter(|c| c.migrate)
                        .map(|c| c.name)
                        .collect(),
                );
            }
            _ => {}
        }
    }
    let schedule =
        schedule.ok_or_else(|| format!("{} holds no MigrationSchedule", path.display()))?;
    Ok(Manifest {
        schedule,
        companies,
        steps,
    })
}

/// How to reach the schedule's source database: the password given outside the cluster, and
/// the TLS of `spec.source.tls` (as the URL says without it, as `psql` does).
pub fn source_spec(manifest: &Manifest, password: &PasswordSource) -> Result<ConnectSpec, String> {
    let source = &manifest.schedule.spec.source;
    Ok(ConnectSpec {
        url: source.url.clone(),
        password: password.read("source", source.password_secret_ref.as_ref())?,
        tls: crate::logins::tls::for_command_line("source", source.tls.as_ref())?,
        max_connections: 1,
        create: false,
    })
}

/// How to reach the schedule's target database, as `source_spec` the source.
pub fn target_spec(manifest: &Manifest, password: &PasswordSource) -> Result<ConnectSpec, String> {
    let target = &manifest.schedule.spec.target;
    Ok(ConnectSpec {
        url: target.url.clone(),
        password: password.read("target", target.password_secret_ref.as_ref())?,
        tls: crate::logins::tls::for_command_line("target", target.tls.as_ref())?,
        max_connections: 1,
        create: false,
    })
}

/// The lake a manifest's schedule writes into, when its target is one, with the key given
/// outside the cluster.
pub fn lake_target(
    manifest: &Manifest,
    password: &PasswordSource,
) -> Result<Option<crate::lake::store::LakeTarget>, String> {
    let spec = &manifest.schedule.spec;
    if !crate::lake::store::is_lake_url(&spec.target.url) {
        return Ok(None);
    }
    let secret = password.read("target", spec.target.password_secret_ref.as_ref())?;
    Ok(crate::convert::lake_target(spec, secret))
}

/// The configuration of one run of a manifest's schedule into its lake; None when its target
/// is a database.
pub fn lake_run_config(
    manifest: &Manifest,
    source_password: &PasswordSource,
    target_password: &PasswordSource,
    run_id: String,
    run_type: crate::engine::RunType,
) -> Result<Option<crate::lake::run::LakeRunConfig>, String> {
    let Some(lake) = lake_target(manifest, target_password)? else {
        return Ok(None);
    };
    Ok(Some(crate::convert::lake_run_config(
        &manifest.schedule.spec,
        manifest.companies.clone(),
        (source_spec(manifest, source_password)?, lake),
        run_id,
        run_type,
    )))
}

/// The engine's configuration for one run of a manifest's schedule.
pub fn run_config(
    manifest: &Manifest,
    source_password: &PasswordSource,
    target_password: &PasswordSource,
    run_id: String,
    run_type: crate::engine::RunType,
) -> Result<RunConfig, String> {
    Ok(crate::convert::engine_config(
        &manifest.schedule.spec,
        manifest.companies.clone(),
        (
            source_spec(manifest, source_password)?,
            target_spec(manifest, target_password)?,
        ),
        run_id,
        run_type,
    ))
}
