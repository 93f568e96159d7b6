//! The `cloudmigrate` command line.

use clap::{Parser, Subcommand};
use cloudmigrate::api::common::namespaced_name;
use cloudmigrate::console::{ProgressDisplay, results_table, summary};
use cloudmigrate::db::ReadProgress;
use cloudmigrate::engine::{self, RunConfig};
use cloudmigrate::manifest::{self, PasswordSource};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// Migrate an on-premises ERP database to a cloud tenant database, the Kubernetes way.
#[derive(Parser)]
#[command(name = "cloudmigrate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a Business Central-like on-premises database and a cloud database (SQLite files),
    /// migrate one into the other, and show what happened, table by table.
    Demo {
        /// Where the two database files go.
        #[arg(long, default_value = "cloudmigrate-demo")]
        dir: PathBuf,
        /// Show only the tables with warnings or failures in the results table.
        #[arg(long)]
        only_problems: bool,
    },
    /// Run one migration now. With -f FILE: from a MigrationSchedule manifest, here, without a
    /// cluster. With SCHEDULE: in the cluster (Run Migration Now: sets the schedule's
    /// spec.runRequest and names the run it starts).
    #[command(group(clap::ArgGroup::new("what").required(true).args(["file", "schedule"])))]
    Run {
        /// The manifest: a MigrationSchedule, optionally followed by its CompanySelection.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<PathBuf>,
        /// The MigrationSchedule in the cluster.
        schedule: Option<String>,
        /// The namespace of SCHEDULE; by default the current context's.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// A file whose first line is the source database's password. Otherwise the variable
        /// CLOUDMIGRATE_SOURCE_PASSWORD is used.
        #[arg(long, value_name = "FILE")]
        source_password_file: Option<PathBuf>,
        /// A file whose first line is the target database's password. Otherwise the variable
        /// CLOUDMIGRATE_TARGET_PASSWORD is used.
        #[arg(long, value_name = "FILE")]
        target_password_file: Option<PathBuf>,
        /// Show only the tables with warnings or failures in the results table.
        #[arg(long)]
        only_problems: bool,
        /// `auto`: only what changed, where change tracking allows; `full`: every table in full;
        /// `diagnostic`: write nothing, check both databases and report what a run would do.
        #[arg(long = "type", default_value = "auto", value_parser = run_type_arg())]
        run_type: engine::RunType,
    },
    /// Remove change tracking (its triggers and cloudmigrate_ct_* tables) from the source of a
    /// MigrationSchedule manifest, leaving the source as it was.
    DisableTracking {
        /// The manifest with the MigrationSchedule.
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: PathBuf,
        /// A file whose first line is the source database's password. Otherwise the variable
        /// CLOUDMIGRATE_SOURCE_PASSWORD is used.
        #[arg(long, value_name = "FILE")]
        source_password_file: Option<PathBuf>,
    },
    /// Run the operator: reconcile every cloudmigrate kind in the cluster of the current
    /// kubeconfig (or the in-cluster service account).
    Controller {
        /// Where /metrics, /healthz and /readyz are served.
        #[arg(long, default_value = "0.0.0.0:8080", value_name = "ADDRESS:PORT")]
        listen: std::net::SocketAddr,
        /// Take part in leader election, so that only one replica acts at a time.
        #[arg(long)]
        leader_elect: bool,
        /// The Lease that leader election uses, as NAMESPACE/NAME. The namespace defaults to
        /// POD_NAMESPACE, else "default".
        #[arg(long, value_name = "NAMESPACE/NAME")]
        leader_lease: Option<String>,
        /// Watch only this namespace.
        #[arg(long, short = 'n')]
        namespace: Option<String>,
        /// Write logs as JSON lines.
        #[arg(long)]
        log_json: bool,
        /// A directory under which tenants' `sqlite://` URLs may name files, and `file://` lake
        /// targets folders (repeat for more). None by default: the controller opens no local
        /// file of a schedule.
        #[arg(long = "sqlite-dir", value_name = "DIR")]
        sqlite_dirs: Vec<PathBuf>,
        /// Namespaces whose schedules may use `runner: InProcess` (comma-separated, `*` for
        /// all). None by default: runs there run the tenant's work inside the controller.
        #[arg(long, value_name = "NAMESPACE,...", value_delimiter = ',')]
        in_process_namespaces: Vec<String>,
        /// How many runs may run in-process at once; more wait (`WaitingForRunner`).
        #[arg(long, default_value_t = cloudmigrate::controller::context::DEFAULT_MAX_IN_PROCESS_RUNS)]
        max_in_process_runs: usize,
    },
    /// Work on a MigrationRun as one worker of its Job: take this worker's share of the tables,
    /// copy them, and write progress and results into the run's status. SIGTERM stops it after
    /// the tables in progress.
    Replicate {
        /// The run, as NAMESPACE/NAME.
        #[arg(long)]
        run: String,
        /// This worker's index; by default CLOUDMIGRATE_WORKER_INDEX or JOB_COMPLETION_INDEX.
        #[arg(long, env = "CLOUDMIGRATE_WORKER_INDEX")]
        worker_index: Option<i32>,
        /// How many workers share the run.
        #[arg(long, default_value_t = 1)]
        workers: i32,
        /// The attempt of the run this worker belongs to (status.attempts).
        #[arg(long, default_value_t = 1)]
        attempt: i32,
    },
    /// Initialize a migrated company in the target: validate its data against the source
    /// (row counts and checksums, computed by each database), check its row in the Company
    /// table, refresh its tables' statistics, run the CompanySelection's initializationSteps,
    /// and mark it initialized. With -f, from a manifest without a cluster; with --selection,
    /// as the controller's Job does.
    #[command(group(clap::ArgGroup::new("from").required(true).args(["file", "selection"])))]
    Initialize {
        /// The manifest: a MigrationSchedule, optionally followed by its CompanySelection
        /// (whose initializationSteps run).
        #[arg(short = 'f', long = "file", value_name = "FILE")]
        file: Option<PathBuf>,
        /// The CompanySelection, as NAMESPACE/NAME, read from the cluster.
        #[arg(long, value_name = "NAMESPACE/NAME", requires = "attempt")]
        selection: Option<String>,
        /// The company, as in the source's Company table.
        #[arg(long)]
        company: String,
        /// The attempt the controller scheduled (with --selection).
        #[arg(long)]
        attempt: Option<String>,
        /// Record the company as initialized without running anything (with -f).
        #[arg(long, conflicts_with = "selection")]
        mark: bool,
        /// A file whose first line is the source database's password. Otherwise the variable
        /// CLOUDMIGRATE_SOURCE_PASSWORD is used.
        #[arg(long, value_name = "FILE")]
        source_password_file: Option<PathBuf>,
        /// A file whose first line is the target database's password. Otherwise the variable
        /// CLOUDMIGRATE_TARGET_PASSWORD is used.
        #[arg(long, value_name = "FILE")]
        target_password_file: Option<PathBuf>,
    },
    /// Read what runs did.
    Runs {
        #[command(subcommand)]
        command: RunsCommand,
    },
    /// One screen about a MigrationSchedule in the cluster: its conditions, runs, migration
    /// tiles, companies, setup checklist and recent events.
    Status {
        /// The MigrationSchedule.
        schedule: String,
        /// Its namespace; by default the current context's.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Check for Update's action: set the schedule's spec.runtime.image to the newest release
    /// the controller found in the registry (status.runtime.latestVersion), or to --to.
    Update {
        /// The MigrationSchedule.
        schedule: String,
        /// Its namespace; by default the current context's.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// The version to set instead of the newest one found.
        #[arg(long, value_name = "VERSION")]
        to: Option<String>,
    },
    /// Stop a MigrationRun: it finishes the tables in progress, then ends Stopped.
    Stop {
        /// The MigrationRun.
        run: String,
        /// Its namespace; by default the current context's.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Write a support bundle: the namespace's cloudmigrate objects, events and Jobs, the
    /// Secrets they name with every value redacted, and the controller's logs.
    Report {
        /// The namespace of the migration; by default the current context's.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
        /// Where the controller runs.
        #[arg(long, default_value = "cloudmigrate-system")]
        controller_namespace: String,
        /// The directory to write; by default cloudmigrate-report-<time>.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Whether cloudmigrate is ready: its CRDs are established and a controller is up. Exits
    /// 0 when ready, 2 when not: for CI pipelines.
    Check {
        /// Look again until ready, at most this many seconds.
        #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "300")]
        wait: Option<u64>,
        /// The controller's leader Lease, as NAMESPACE/NAME (the chart's default). Without
        /// leader election, a Ready controller pod in that namespace counts.
        #[arg(long, default_value = "cloudmigrate-system/cloudmigrate-controller")]
        lease: String,
        /// Check the workers' ServiceAccount in this namespace only; by default in every
        /// namespace with a schedule that runs Jobs.
        #[arg(short = 'n', long)]
        namespace: Option<String>,
    },
    /// Print the CustomResourceDefinitions of every cloudmigrate kind, ready for
    /// `kubectl apply --server-side -f -`.
    Crds {
        /// Write one file per kind into this directory instead of printing them.
        #[arg(long, value_name = "DIR")]
        out_dir: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RunsCommand {
    /// Print every table of a MigrationRun from the run log in its target database. The run's
    /// status keeps only the tables that did not migrate cleanly once a run passes 2,000 tables;
    /// the log keeps them all.
    Show {
        /// The run, as NAMESPACE/NAME.
        run: String,
        /// A file whose first line is the target database's password. Otherwise the variable
        /// CLOUDMIGRATE_TARGET_PASSWORD, else the Secret of the schedule's passwordSecretRef.
        #[arg(long, value_name = "FILE")]
        target_password_file: Option<PathBuf>,
        /// Show only the tables with warnings or failures.
        #[arg(long)]
        only_problems: bool,
    },
}

/// `--type`: one of the run types, by its lower-case name.
fn run_type_arg() -> impl clap::builder::TypedValueParser<Value = engine::RunType> {
    use clap::builder::TypedValueParser;
    // The possible values are checked first, and each of them parses.
    clap::builder::PossibleValuesParser::new(["auto", "full", "diagnostic"])
        .map(|s| s.parse::<engine::RunType>().unwrap_or_default())
}

/// Exit codes: 0 every table migrated (perhaps with warnings), 1 some table failed, 2 the run
/// could not start or the command was wrong.
const EXIT_TABLES_FAILED: u8 = 1;
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(&cli.command);
    let result = match cli.command {
        Command::Crds { out_dir } => print_crds(out_dir).map(|()| ExitCode::SUCCESS),
        command => runtime().and_then(|rt| rt.block_on(dispatch(command))),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// Logs go to stderr, filtered by RUST_LOG (for example `RUST_LOG=cloudmigrate=debug`): as
/// JSON from the controller when asked and from the workers always, as text elsewhere.
fn init_logs(command: &Command) {
    let (level, json) = match command {
        // sqlx reports every server NOTICE at info, and every statement over a second as a
        // warning: a bulk copy is made of such statements. Neither is the operator's news.
        Command::Controller { log_json, .. } => ("info,sqlx=error", *log_json),
        Command::Replicate { .. } => ("info,sqlx=error", true),
        Command::Initialize {
            selection: Some(_), ..
        } => ("info,sqlx=error", true),
        _ => ("warn,sqlx=error", false),
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        logs.json().init();
    } else {
        logs.init();
    }
}

/// A password that comes from `env` or from a file given on the command line.
fn password_source(env: &str, file: Option<PathBuf>) -> PasswordSource {
    PasswordSource {
        env: env.into(),
        file,
    }
}

/// Runs one subcommand (every one but `crds`) to its end.
async fn dispatch(command: Command) -> Result<ExitCode, String> {
    match command {
        Command::Controller {
            listen,
            leader_elect,
            leader_lease,
            namespace,
            log_json: _,
            sqlite_dirs,
            in_process_namespaces,
            max_in_process_runs,
        } => {
            // Before anything connects: a tenant's SQLite URL reaches only these directories.
            cloudmigrate::db::tenancy::restrict_to(sqlite_dirs);
            let in_process = cloudmigrate::controller::context::InProcessNamespaces::from_flag(
                in_process_namespaces,
            );
            controller(
                listen,
                leader_elect,
                leader_lease,
                namespace,
                (in_process, max_in_process_runs),
            )
            .await
        }
        Command::Replicate {
            run,
            worker_index,
            workers,
            attempt,
        } => replicate(run, worker_index, workers, attempt).await,
        Command::Runs {
            command:
                RunsCommand::Show {
                    run,
                    target_password_file,
                    only_problems,
                },
        } => runs_show(run, target_password_file, only_problems).await,
        Command::Initialize {
            selection: Some(selection),
            company,
            attempt,
            ..
        } => initialize_worker(selection, company, attempt.unwrap_or_default()).await,
        Command::Initialize {
            file: Some(file),
            company,
            mark,
            source_password_file,
            target_password_file,
            ..
        } => {
            let passwords = (
                password_source("CLOUDMIGRATE_SOURCE_PASSWORD", source_password_file),
                password_source("CLOUDMIGRATE_TARGET_PASSWORD", target_password_file),
            );
            initialize_file(file, company, mark, passwords).await
        }
        // clap requires one of the two.
        Command::Initialize { .. } => Err("give -f FILE or --selection NAMESPACE/NAME".into()),
        Command::Crds { out_dir } => print_crds(out_dir).map(|()| ExitCode::SUCCESS),
        Command::DisableTracking {
            file,
            source_password_file,
        } => {
            let source = password_source("CLOUDMIGRATE_SOURCE_PASSWORD", source_password_file);
            disable_tracking(file, source).await
        }
        Command::Demo { dir, only_problems } => demo(dir, only_problems).await,
        Command::Run {
            file: None,
            schedule: Some(schedule),
            namespace,
            ..
        } => run_schedule(schedule, namespace).await,
        Command::Run {
            file: Some(file),
            source_password_file,
            target_password_file,
            only_problems,
            run_type,
            ..
        } => {
            let source = password_source("CLOUDMIGRATE_SOURCE_PASSWORD", source_password_file);
            let target = password_source("CLOUDMIGRATE_TARGET_PASSWORD", target_password_file);
            run_file(file, source, target, only_problems, run_type).await
        }
        // clap requires -f or SCHEDULE.
        Command::Run { .. } => Err("give -f FILE, or the name of a MigrationSchedule".into()),
        Command::Status {
            schedule,
            namespace,
        } => status(schedule, namespace).await,
        Command::Stop { run, namespace } => stop(run, namespace).await,
        Command::Update {
            schedule,
            namespace,
            to,
        } => {
            let (client, ns) = cloudmigrate::ops::connect(namespace).await?;
            println!(
                "{}",
                cloudmigrate::ops::update(&client, &ns, &schedule, to).await?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            namespace,
            controller_namespace,
            out,
        } => report(namespace, controller_namespace, out).await,
        Command::Check {
            wait,
            lease,
            namespace,
        } => check(wait, lease, namespace).await,
    }
}

/// `cloudmigrate controller`: the operator, until SIGTERM or the loss of leadership.
async fn controller(
    listen: std::net::SocketAddr,
    leader_elect: bool,
    leader_lease: Option<String>,
    namespace: Option<String>,
    (in_process, max_in_process_runs): (
        cloudmigrate::controller::context::InProcessNamespaces,
        usize,
    ),
) -> Result<ExitCode, String> {
    let leader_lease = match (leader_elect, leader_lease) {
        (false, None) => None,
        (_, Some(l)) => {
            let (ns, name) = namespaced_name(
                &l,
                "--leader-lease",
                "cloudmigrate-system/cloudmigrate-controller",
            )?;
            Some((ns.to_string(), name.to_string()))
        }
        (true, None) => Some((
            std::env::var("POD_NAMESPACE").unwrap_or_else(|_| "default".into()),
            "cloudmigrate-controller".to_string(),
        )),
    };
    cloudmigrate::controller::run(cloudmigrate::controller::Options {
        listen,
        leader_lease,
        namespace,
        in_process,
        max_in_process_runs,
    })
    .await
    .map(|()| ExitCode::SUCCESS)
    .map_err(|e| e.to_string())
}

/// `cloudmigrate run SCHEDULE`: asks the controller for a run now, and says which started.
async fn run_schedule(schedule: String, namespace: Option<String>) -> Result<ExitCode, String> {
    let (client, ns) = cloudmigrate::ops::connect(namespace).await?;
    let said =
        cloudmigrate::ops::run_now(&client, &ns, &schedule, std::time::Duration::from_secs(30))
            .await?;
    println!("{said}");
    Ok(ExitCode::SUCCESS)
}

/// `cloudmigrate status SCHEDULE`: the schedule, its runs and companies on one screen.
async fn status(schedule: String, namespace: Option<String>) -> Result<ExitCode, String> {
    let (client, ns) = cloudmigrate::ops::connect(namespace).await?;
    print!(
        "{}",
        cloudmigrate::ops::status::status(&client, &ns, &schedule).await?
    );
    Ok(ExitCode::SUCCESS)
}

/// `cloudmigrate stop RUN`: asks a run to stop after the tables in progress.
async fn stop(run: String, namespace: Option<String>) -> Result<ExitCode, String> {
    let (client, ns) = cloudmigrate::ops::connect(namespace).await?;
    println!("{}", cloudmigrate::ops::stop(&client, &ns, &run).await?);
    Ok(ExitCode::SUCCESS)
}

/// `cloudmigrate report`: a support bundle, secrets redacted.
async fn report(
    namespace: Option<String>,
    controller_namespace: String,
    out: Option<PathBuf>,
) -> Result<ExitCode, String> {
    let (client, ns) = cloudmigrate::ops::connect(namespace).await?;
    let dir = out.unwrap_or_else(|| {
        PathBuf::from(format!(
            "cloudmigrate-report-{}",
            chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
        ))
    });
    let (files, notes) =
        cloudmigrate::ops::report::report(&client, &ns, &controller_namespace, &dir).await?;
    println!("wrote {} files into {}", files.len(), dir.display());
    for n in notes {
        println!("  not in the bundle: {n}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `cloudmigrate check`: whether the CRDs are served and the controller leads.
async fn check(
    wait: Option<u64>,
    lease: String,
    namespace: Option<String>,
) -> Result<ExitCode, String> {
    let (ns, name) = namespaced_name(
        &lease,
        "--lease",
        "cloudmigrate-system/cloudmigrate-controller",
    )?;
    let (client, _) = cloudmigrate::ops::connect(None).await?;
    let found = cloudmigrate::ops::check::check(
        &client,
        (ns, name),
        namespace.as_deref(),
        wait.map(std::time::Duration::from_secs),
    )
    .await;
    for l in &found.lines {
        println!("{l}");
    }
    Ok(if found.ready {
        println!("ready");
        ExitCode::SUCCESS
    } else {
        println!("not ready");
        ExitCode::from(EXIT_ERROR)
    })
}

/// `cloudmigrate replicate`: one worker of a run's Job.
async fn replicate(
    run: String,
    worker_index: Option<i32>,
    workers: i32,
    attempt: i32,
) -> Result<ExitCode, String> {
    use cloudmigrate::api::run::WorkerPhase;
    let (ns, name) = namespaced_name(&run, "--run", "shop/erp-202605010200")?;
    let index = match worker_index {
        Some(i) => i,
        None => std::env::var("JOB_COMPLETION_INDEX")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    };
    if !(0..workers.max(1)).contains(&index) {
        return Err(format!(
            "--worker-index {index} is outside 0..{workers}: give an index below --workers"
        ));
    }
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot reach the Kubernetes API: {e}"))?;
    let stop = engine::StopSignal::default();
    let on_term = stop.clone();
    tokio::spawn(async move {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
            tracing::warn!("SIGTERM: stopping after the tables in progress");
            on_term.stop();
        }
    });
    let phase = cloudmigrate::runner::work(
        client,
        cloudmigrate::runner::WorkerSpec {
            namespace: ns.to_string(),
            name: name.to_string(),
            index,
            count: workers.max(1),
            attempt,
        },
        stop,
    )
    .await;
    Ok(match phase {
        WorkerPhase::Failed => ExitCode::from(1),
        _ => ExitCode::SUCCESS,
    })
}

/// `cloudmigrate initialize --selection`: a company's initialization, as the controller's Job
/// runs it.
async fn initialize_worker(
    selection: String,
    company: String,
    attempt: String,
) -> Result<ExitCode, String> {
    use cloudmigrate::api::companies::InitializationState;
    let (ns, name) = namespaced_name(&selection, "--selection", "shop/erp")?;
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot reach the Kubernetes API: {e}"))?;
    let state = cloudmigrate::runner::initializer::run(
        client,
        cloudmigrate::runner::initializer::InitializationSpec {
            namespace: ns.to_string(),
            selection: name.to_string(),
            company,
            attempt,
        },
    )
    .await;
    Ok(match state {
        InitializationState::Initialized => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    })
}

/// `cloudmigrate initialize -f FILE --company NAME`: a company's initialization without a
/// cluster, with its validation printed table by table.
async fn initialize_file(
    file: PathBuf,
    company: String,
    mark: bool,
    (source, target): (PasswordSource, PasswordSource),
) -> Result<ExitCode, String> {
    use cloudmigrate::api::companies::InitializationState;
    use cloudmigrate::engine::{initialize, ledger};
    let m = manifest::load(&file)?;
    let target_db = cloudmigrate::db::Database::connect(&manifest::target_spec(&m, &target)?)
        .await
        .map_err(|e| format!("target database: {e}"))?;
    let attempt = format!("cli-{}", chrono::Utc::now().timestamp_millis());
    let db_err = |e: cloudmigrate::db::DbError| format!("target database: {e}");
    if mark {
        ledger::companies::record(
            &target_db,
            &company,
            InitializationState::Initialized,
            &attempt,
            None,
            Some("marked as initialized; no initialization step ran"),
        )
        .await
        .map_err(db_err)?;
        println!("Company {company:?} is marked as initialized.");
        return Ok(ExitCode::SUCCESS);
    }
    let source_db = cloudmigrate::db::Database::connect(&manifest::source_spec(&m, &source)?)
        .await
        .map_err(|e| format!("source database: {e}"))?;
    ledger::companies::record(
        &target_db,
        &company,
        InitializationState::Scheduled,
        &attempt,
        None,
        Some("scheduled from the command line"),
    )
    .await
    .map_err(db_err)?;
    let say = |m: &str| eprintln!("  {m}");
    let outcome =
        initialize::initialize(&source_db, &target_db, &company, &attempt, &m.steps, &say).await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            let message = format!("{e}");
            let _ = ledger::companies::set_state(
                &target_db,
                &company,
                &attempt,
                InitializationState::Failed,
                Some(&message),
                None,
            )
            .await;
            return Err(message);
        }
    };
    source_db.close().await;
    target_db.close().await;
    println!(
        "{}",
        cloudmigrate::console::validation_table(&outcome.validation)
    );
    println!("{company}: {:?}. {}", outcome.state, outcome.message);
    Ok(match outcome.state {
        InitializationState::Initialized => ExitCode::SUCCESS,
        _ => ExitCode::from(EXIT_TABLES_FAILED),
    })
}

/// `cloudmigrate runs show NS/NAME`: the run log of a run, read from its target.
async fn runs_show(
    run: String,
    target_password_file: Option<PathBuf>,
    only_problems: bool,
) -> Result<ExitCode, String> {
    let (ns, name) = namespaced_name(&run, "the run", "shop/erp-202605010200")?;
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("cannot reach the Kubernetes API: {e}; check KUBECONFIG"))?;
    let given = PasswordSource {
        env: "CLOUDMIGRATE_TARGET_PASSWORD".into(),
        file: target_password_file,
    }
    .given("target")?;
    let (mrun, report) = cloudmigrate::runner::log::run_log(&client, ns, name, given).await?;
    println!("{}", results_table(&report, only_problems));
    let status = mrun.status.unwrap_or_default();
    println!(
        "Run {run}: {} ({} tables in the log)",
        status
            .result
            .map(|r| format!("{r:?}"))
            .unwrap_or_else(|| "still running".into()),
        report.tables.len()
    );
    Ok(ExitCode::SUCCESS)
}

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("starting the async runtime: {e}"))
}

async fn demo(dir: PathBuf, only_problems: bool) -> Result<ExitCode, String> {
    eprintln!(
        "Creating the on-premises database {}/onprem.db ...",
        dir.display()
    );
    let rows = cloudmigrate::demo::create(&dir)
        .await
        .map_err(|e| e.to_string())?;
    eprintln!(
        "  {} companies ({}), {rows} rows; the cloud database {}/cloud.db has the cloud schema.\n",
        cloudmigrate::demo::COMPANIES.len(),
        cloudmigrate::demo::COMPANIES.join(", "),
        dir.display()
    );
    let config = cloudmigrate::demo::run_config(&dir);
    let source = cloudmigrate::db::Database::connect(&config.source)
        .await
        .map_err(|e| format!("source database: {e}"))?;
    let catalog = cloudmigrate::engine::catalog::Catalog::read_with_sizes(&source)
        .await
        .map_err(|e| format!("source database: {e}"))?;
    println!(
        "{}\n",
        cloudmigrate::console::companies_table(&catalog.company_sizes())
    );
    // The demo's one failing table is part of the story, so the demo itself succeeds; `run`
    // exits with 1 when a table fails.
    migrate(&config, only_problems).await?;
    // The first company's data, validated against the source, as its initialization does.
    let company = cloudmigrate::demo::COMPANIES[0];
    let target = cloudmigrate::db::Database::connect(&config.target)
        .await
        .map_err(|e| format!("target database: {e}"))?;
    let validation = cloudmigrate::engine::initialize::validate_company(
        &source,
        &target,
        company,
        &|_, _, _| {},
    )
    .await
    .map_err(|e| format!("validating {company}: {e}"))?;
    source.close().await;
    target.close().await;
    println!(
        "\n{}",
        cloudmigrate::console::validation_summary(company, &validation)
    );
    println!(
        "\nThe failed and the warning table are the demo's: a customer name too long for its cloud \
         column, and an extension table the cloud lacks. The databases stay in {}/ (open them with \
         sqlite3); the cloud's replication state is in its tables cloudmigrate_table_state, \
         cloudmigrate_table_log and cloudmigrate_runs. Run `cloudmigrate run -f \
         examples/local/schedule.yaml` to migrate again: only what changed is copied; and \
         `cloudmigrate initialize -f examples/local/schedule.yaml --company \"{}\"` to \
         initialize that company.",
        dir.display(),
        cloudmigrate::demo::COMPANIES[0]
    );
    Ok(ExitCode::SUCCESS)
}

async fn run_file(
    file: PathBuf,
    source: PasswordSource,
    target: PasswordSource,
    only_problems: bool,
    run_type: engine::RunType,
) -> Result<ExitCode, String> {
    let m = manifest::load(&file)?;
    let name = m
        .schedule
        .metadata
        .name
        .clone()
        .unwrap_or_else(|| "run".into());
    let run_id = format!("{name}-{}", chrono::Utc::now().format("%Y%m%d%H%M%S%3f"));
    if let Some(config) = manifest::lake_run_config(&m, &source, &target, run_id.clone(), run_type)?
    {
        let progress = Arc::new(ReadProgress::default());
        let display = ProgressDisplay::new(progress.clone());
        let report = cloudmigrate::lake::run::run(&config, &display, progress).await;
        display.finish();
        return reported(report.map_err(|e| e.to_string())?, only_problems);
    }
    let config = manifest::run_config(&m, &source, &target, run_id, run_type)?;
    migrate(&config, only_problems).await
}

async fn disable_tracking(file: PathBuf, source: PasswordSource) -> Result<ExitCode, String> {
    let m = manifest::load(&file)?;
    let spec = manifest::source_spec(&m, &source)?;
    let db = cloudmigrate::db::Database::connect(&spec)
        .await
        .map_err(|e| format!("source database: {e}"))?;
    let n = cloudmigrate::engine::tracking::disable_all(&db)
        .await
        .map_err(|e| format!("source database: {e}"))?;
    db.close().await;
    println!("Change tracking removed from {n} tables; the next run copies every table in full.");
    Ok(ExitCode::SUCCESS)
}

async fn migrate(config: &RunConfig, only_problems: bool) -> Result<ExitCode, String> {
    let progress = Arc::new(ReadProgress::default());
    let display = ProgressDisplay::new(progress.clone());
    let report = engine::run(config, &display, progress).await;
    display.finish();
    reported(report.map_err(|e| e.to_string())?, only_problems)
}

/// Prints a run's tables and summary; the exit code says whether a table failed.
fn reported(report: engine::report::RunReport, only_problems: bool) -> Result<ExitCode, String> {
    println!("{}", results_table(&report, only_problems));
    println!("{}", summary(&report));
    Ok(if report.tiles().failed > 0 {
        ExitCode::from(EXIT_TABLES_FAILED)
    } else {
        ExitCode::SUCCESS
    })
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
