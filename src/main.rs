//! The `cloudmigrate` command line.

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

/// Migrate an on-premises ERP database to a cloud tenant database, the Kubernetes way.
#[derive(Parser)]
#[command(name = "cloudmigrate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the CustomResourceDefinitions of every cloudmigrate kind, ready for
    /// `kubectl apply --server-side -f -`.
    Crds {
        /// Write one file per kind into this directory instead of printing them.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Crds { out_dir } => print_crds(out_dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn print_crds(out_dir: Option<PathBuf>) -> Result<(), String> {
    let mut all = String::new();
    for crd in cloudmigrate::api::crds() {
        let yaml =
            cloudmigrate::api::crd_yaml(&crd).map_err(|e| format!("rendering a CRD: {e}"))?;
        match &out_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| format!("creating {}: {e}", dir.display()))?;
                let path = dir.join(cloudmigrate::api::crd_file_name(&crd));
                std::fs::write(&path, yaml)
                    .map_err(|e| format!("writing {}: {e}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
            None => all.push_str(&yaml),
        }
    }
    print!("{all}");
    Ok(())
}
