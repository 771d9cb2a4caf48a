//! `drover`: the command line. Thin by design: it parses arguments, calls the libraries, prints
//! what they return and picks the exit code ([`EXIT_CODES`], the same table for every verb). A
//! panic (101) is a bug.

#[macro_use]
mod output;
mod alerts_cli;
mod backup_cli;
mod ops_audit;
mod pin;
mod posture_cli;
mod remote;
mod run_cli;
#[cfg(feature = "aws")]
mod s3_anchor;
mod schedule_cli;
mod server_cli;
mod sim_cli;
mod tabletop_cli;
mod telemetry;

use backup_cli::{backup_command, key_generate};
use clap::{Parser, Subcommand, ValueEnum};
use drover_dsl::{Compilation, CompileOptions, FsLoader, Mode};
use std::process::ExitCode;

/// The exit codes of every verb (also in `drover --help` and docs/cli.md).
pub const EXIT_CODES: &str = "\
Exit codes (every verb):
  0  success: the run succeeded and met its RTO and RPO targets; the check, verification or
     command succeeded
  1  failure: the run failed or was rolled back; errors in a runbook; a verification failed; an
     operation was refused
  2  usage: bad arguments, a mode the runbook does not have, an unsupported --state location
  3  the run succeeded but missed its RTO or RPO target (simulate: the p95 exceeds the target
     with --fail-if-p95-exceeds-target)
  4  the run was interrupted: `drover resume RUN` continues it
  5  the run finished, but steps failed (on_failure = continue) or were refused by the drill
     guard: read `drover status`
  A panic (exit 101) is a bug: please report it.";

#[derive(Parser)]
#[command(
    name = "drover",
    version,
    about = "Disaster-recovery runbooks: compile, check, plan and run them",
    after_help = EXIT_CODES
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Tracing export, for the verbs that run a runbook.
#[derive(clap::Args, Clone, Default)]
struct TelemetryArgs {
    /// Export a span per run and per step over OTLP/HTTP to this endpoint (also
    /// OTEL_EXPORTER_OTLP_ENDPOINT).
    #[arg(long, value_name = "ENDPOINT")]
    otlp: Option<String>,
}

/// What a runbook is compiled with: parameters and the operator roster.
#[derive(clap::Args, Clone, Default)]
struct SourceArgs {
    /// Set a parameter: `--var region=us-west-2`.
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = parse_var)]
    vars: Vec<(String, String)>,
    /// The operator roster (TOML) to use instead of the one the runbook's header names
    /// (`operators = "…"`).
    #[arg(long, value_name = "FILE")]
    operators: Option<String>,
}

/// Who does a backup or key operation, and where its audit record goes.
#[derive(clap::Args, Clone, Default)]
pub(crate) struct OperatorArgs {
    /// State directory whose audit log records the operation (`drover audit show --backups`).
    #[arg(long, env = "DROVER_STATE", default_value = ".drover")]
    pub(crate) state: String,
    /// Who does it (default: the OS user), recorded as typed. Refused with --operators.
    #[arg(long = "as")]
    pub(crate) operator: Option<String>,
    /// An operator roster: who does it is established by a statement they sign for this
    /// operation (--operator-key, or the first roster key in ssh-agent).
    #[arg(long, value_name = "FILE")]
    pub(crate) operators: Option<String>,
    /// Sign the operation's statement with this OpenSSH private key (with --operators).
    #[arg(long, value_name = "PATH", requires = "operators")]
    pub(crate) operator_key: Option<String>,
    /// Append a signed checkpoint of the audit log to this anchor (`file:DIR`, or `s3://BUCKET/PREFIX` under Object Lock with the aws feature), as runs do.
    #[arg(long, value_name = "LOCATION")]
    pub(crate) audit_anchor: Option<String>,
}

/// `drover schedule …`.
#[derive(Subcommand)]
enum ScheduleCommand {
    /// Every schedule: its next fire times in its own zone and in UTC, and why a time is skipped
    /// (blackout, overlap); with a state directory or a server, missed fires and the last
    /// decision.
    #[command(after_help = "\
Examples:
  drover schedule list runbooks/
  drover schedule list runbooks/quarterly-drill.drover --count 8
  drover schedule list --server https://drover.example:8440")]
    List {
        /// Runbook files or directories (default: runbooks).
        paths: Vec<String>,
        /// How many upcoming times per schedule.
        #[arg(long, default_value_t = 5)]
        count: usize,
        /// State directory (for missed fires and the last decision).
        #[arg(long, env = "DROVER_STATE", default_value = ".drover")]
        state: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        /// Ask a Drover server about its runbook directory instead (also DROVER_SERVER).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
    },
}

/// How `drover posture drills` and `drover posture backups` print.
#[derive(Clone, Copy, ValueEnum)]
enum PostureFormat {
    /// A Markdown table.
    Md,
    /// A self-contained HTML page with the calendar of the past and next twelve months.
    Html,
    /// JSON.
    Json,
}

/// `drover posture …`.
#[derive(Subcommand)]
enum PostureCommand {
    /// Per dataset of an inventory, the 3-2-1-1-0 rule — 3 copies of the newest recovery point,
    /// 2 platforms, 1 off site, 1 immutable, 0 verification errors — with its age against the
    /// RPO, retention against the policy (6 years) and key rotation (90 days), each read from the
    /// stores, the key service and the journal. Findings name the dataset, the copy and what to
    /// change; checks carry HIPAA and NIST control ids. Exits 3 when any check fails.
    #[command(after_help = "\
Examples:
  drover posture backups --inventory backups.toml
  drover posture backups --inventory backups.toml --format html -o posture.html
  drover posture backups --inventory backups.toml --format json | jq '.datasets[].checks[] | select(.passed | not)'

Inventory (TOML):
  [datasets.ehr]
  rpo       = \"15m\"
  retention = \"6y\"
  key       = \"aws-kms:alias/phi-backup\"
  copies    = [\"s3://phi-vault/ehr/\", \"azblob://drdata/phi/ehr/\", \"/backups/ehr/\"]

Verifications come from the journal: run `drover backup verify COPY --key KEY --sample N` on
each copy at least every verify_every (default 7d).")]
    Backups {
        /// The inventory file.
        #[arg(long, value_name = "FILE")]
        inventory: String,
        /// State directory (its journal holds the verifications).
        #[arg(long, env = "DROVER_STATE", default_value = ".drover")]
        state: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = PostureFormat::Md)]
        format: PostureFormat,
        /// Write to this file instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        out: Option<String>,
    },
    /// Per runbook with a policy or a schedule: the last successful drill (RTO/RPO against
    /// targets, its report), the last failed one, the next scheduled, days until overdue. Exits 3
    /// when any runbook is overdue, so CI or cron can gate on it.
    #[command(after_help = "\
Examples:
  drover posture drills runbooks/ --state /var/lib/drover
  drover posture drills --format html -o posture.html
  drover posture drills --server https://drover.example:8440 || page-the-dr-lead")]
    Drills {
        /// Runbook files or directories (default: runbooks).
        paths: Vec<String>,
        /// State directory (the runs).
        #[arg(long, env = "DROVER_STATE", default_value = ".drover")]
        state: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = PostureFormat::Md)]
        format: PostureFormat,
        /// Write to this file instead of standard output.
        #[arg(short, long, value_name = "FILE")]
        out: Option<String>,
        /// Ask a Drover server about its runbook directory and runs instead (also DROVER_SERVER).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
    },
}

/// `drover alerts …`.
#[derive(Subcommand)]
enum AlertsCommand {
    /// The configured sinks, and every alert (firing or resolved) with where it stands with
    /// each sink: delivered, attempts, the last error.
    List {
        /// The server (also DROVER_SERVER).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// Read a state directory instead of asking a server.
        #[arg(long)]
        state: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
    /// Send a test alert through one sink now and say what it answered.
    #[command(after_help = "\
Examples:
  drover alerts test pagerduty --server https://drover.example:8440
  drover alerts test ops-mail --config /etc/drover/server.toml   # from this host, no server")]
    Test {
        /// The sink's name.
        sink: String,
        /// Ask the server to send it (also DROVER_SERVER).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// Send it from here, with this server configuration file.
        #[arg(long, value_name = "FILE")]
        config: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
}

/// `drover passkey …`.
#[derive(Subcommand, Debug)]
enum PasskeyCommand {
    /// Make the passkey you registered in the console yours: shows its fingerprint and signs its
    /// certificate with your SSH key (the roster's), so its browser approvals verify offline.
    #[command(after_help = "\
Examples:
  drover passkey confirm --server https://drover.example:8440 --key ~/.ssh/id_ed25519")]
    Confirm {
        /// The server (also DROVER_SERVER; `drover login --server URL` first).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// Sign with this OpenSSH private key (default: the first key in ssh-agent).
        #[arg(long, value_name = "PATH")]
        key: Option<String>,
        /// Certify every pending passkey (default: only the newest).
        #[arg(long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum Command {
    /// Serve the Language Server Protocol on stdin and stdout, for editors: diagnostics,
    /// completion, hover, go to definition, references, rename, formatting, outline, quick fixes.
    Lsp,
    /// Check runbooks for errors and safety problems.
    Check {
        /// Runbook files.
        #[arg(required = true)]
        files: Vec<String>,
        #[command(flatten)]
        source: SourceArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
    /// Show a runbook's parallel stages, critical path and predicted RTO.
    Plan {
        /// Runbook file.
        file: String,
        #[command(flatten)]
        source: SourceArgs,
        /// The mode to analyse (default: the runbook's first mode).
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// Output format: text for people, json for the compiled plan.
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
    },
    /// Monte Carlo simulation of a runbook on a virtual clock: RTO/RPO distributions, the chance
    /// of meeting the targets, critical steps. Simulated: never a verified recovery.
    Simulate {
        /// Runbook file.
        file: String,
        #[command(flatten)]
        source: SourceArgs,
        /// The mode to simulate (default: the runbook's first mode).
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// A what-if scenario (TOML; see docs/simulator.md).
        #[arg(long)]
        scenario: Option<String>,
        /// Number of trials.
        #[arg(long, default_value_t = 10_000)]
        trials: u64,
        /// Seed: the same seed gives the same result, whatever the thread count.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Worker threads (default: the machine's cores).
        #[arg(long)]
        threads: Option<usize>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
        /// Exit 3 when the simulated p95 RTO (or RPO) exceeds the runbook's target (for CI).
        #[arg(long)]
        fail_if_p95_exceeds_target: bool,
        /// Also write a picture: the RTO histogram and the Gantt chart of the median trial (SVG).
        #[arg(long, value_name = "FILE")]
        svg: Option<String>,
        /// Where step durations come from: the runbook's estimates, or the durations measured in
        /// past runs of this runbook in the journal (`--state`); steps never measured keep their
        /// estimates.
        #[arg(long, value_enum, default_value_t = DurationSource::Estimates)]
        durations: DurationSource,
        /// State directory whose journal holds the past runs (with `--durations measured`) and
        /// where `--record` keeps the result.
        #[arg(long, env = "DROVER_STATE", default_value = ".drover")]
        state: String,
        /// Keep the result in the state directory's journal, so that reports of runs of the same
        /// runbook (same sources, same mode) set this prediction beside what they achieved.
        #[arg(long)]
        record: bool,
    },
    /// A tabletop exercise: one simulated run narrated at accelerated virtual time, the team
    /// typing the approvals; ends with a report. Simulated: never a verified recovery.
    Tabletop {
        /// Runbook file.
        file: String,
        #[command(flatten)]
        source: SourceArgs,
        /// The mode to rehearse (default: the runbook's first mode).
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        /// A scenario with injects (TOML; see docs/simulator.md).
        #[arg(long)]
        scenario: Option<String>,
        /// Seed for the step durations.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Virtual seconds per real second (0: no pauses).
        #[arg(long, default_value_t = 600.0)]
        speed: f64,
        /// Write the report (timeline, decisions, simulated RTO/RPO) as JSON here.
        #[arg(long)]
        report: Option<String>,
        /// Run the exercise on this server for the whole team (only when given: DROVER_SERVER
        /// does not move a terminal tabletop): journaled as a simulated run; participants follow
        /// and approve in the console, where you facilitate (pause, speed, injects).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// With --server: sign the start with this OpenSSH private key (default: ssh-agent).
        #[arg(long, value_name = "PATH")]
        key: Option<String>,
    },
    /// Draw a runbook's dependency graph.
    Graph {
        /// Runbook file.
        file: String,
        #[command(flatten)]
        source: SourceArgs,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
        format: GraphFormat,
    },
    /// Rewrite runbooks in canonical layout.
    Fmt {
        /// Runbook files.
        #[arg(required = true)]
        files: Vec<String>,
        /// Change nothing; exit 1 if a file is not formatted.
        #[arg(long)]
        check: bool,
    },
    /// List the actions steps can use, with their inputs, outputs and default timeouts.
    Actions {
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
    /// Encrypted backups: create, verify, restore, rewrap, inspect.
    #[command(subcommand, after_help = BACKUP_SCHEMES)]
    Backup(BackupCommand),
    /// Keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Execute a runbook: journaled, resumable, audited; prints achieved RTO and RPO.
    #[command(after_help = "\
Examples:
  drover run runbooks/quickstart.drover
  drover run runbooks/ehr-failover.drover --mode failover --as alice --var zone_id=Z123
  drover run my-drill.drover --dry-run                 # validate and preflight, change nothing
  drover run my-drill.drover --format json | jq .rto   # the run record as JSON on stdout

Exit codes: 0 succeeded and met the targets, 1 failed or rolled back, 2 usage, 3 missed the RTO
or RPO target, 4 interrupted (drover resume), 5 finished with failed or refused steps.")]
    Run {
        /// Runbook file.
        file: String,
        /// The mode (optional when the runbook has only one).
        #[arg(long, value_enum)]
        mode: Option<ModeArg>,
        #[command(flatten)]
        source: SourceArgs,
        /// State directory (journal, audit log, run records).
        #[arg(long, env = "DROVER_STATE", default_value = ".drover")]
        state: String,
        /// Who starts the run (default: the OS user). Not accepted when the runbook has an
        /// operator roster: then the run is started by a signed statement (--key, or ssh-agent).
        #[arg(long = "as")]
        operator: Option<String>,
        /// Sign the start of the run with this OpenSSH private key (runbooks with an operator
        /// roster; without it, the first key in ssh-agent that the roster lists is used).
        #[arg(long, value_name = "PATH")]
        key: Option<String>,
        /// Append signed checkpoints of the audit chain (after every approval, every 20 records
        /// and at the end) to this anchor outside the state directory: `file:DIR`, or `s3://BUCKET/PREFIX` (a bucket with Object Lock; compliance-mode versions; the aws feature).
        #[arg(long, value_name = "LOCATION")]
        audit_anchor: Option<String>,
        /// When the incident or drill was declared, RFC 3339 (default: now).
        #[arg(long)]
        declared_at: Option<String>,
        /// Run id (default: generated): letters, digits, `.`, `_` and `-`, at most 64.
        #[arg(long, value_parser = parse_run_id)]
        run_id: Option<String>,
        /// Validate and preflight every step, print what would change, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Run even though an unfinished run (running, waiting or interrupted) holds this
        /// runbook or a production resource this run changes; the reason goes into the audit log.
        /// Without it, one cutover at a time.
        #[arg(long, value_name = "REASON")]
        concurrent: Option<String>,
        /// Start without first preflighting every step (by default a run that would fail a
        /// preflight — a missing instance, zone, record set, key — is refused before any change).
        /// Recorded in the audit log.
        #[arg(long)]
        skip_preflight: bool,
        /// Talk to a Drover server instead of the local state directory (also DROVER_SERVER;
        /// `drover login --server URL` first).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// Output format: text (progress lines and a summary), or json (progress on standard
        /// error, the run record on standard output).
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        #[command(flatten)]
        telemetry: TelemetryArgs,
    },
    /// Undo what a stopped run changed: every completed step with an undo (its `compensate`
    /// block or the action's built-in undo), in reverse dependency order; steps that did not run
    /// never will. Works on failed, interrupted, crashed and finished runs; journaled, audited
    /// and resumable (ask again to retry undos that failed).
    #[command(after_help = "\
Examples:
  drover rollback latest
  drover rollback r20261202T1030-1a2b --as alice --state /var/lib/drover")]
    Rollback {
        /// Run id, or `latest`.
        run_id: String,
        /// State directory.
        #[arg(long, env = "DROVER_STATE", default_value = ".drover")]
        state: String,
        /// Who asks for the rollback (default: the OS user).
        #[arg(long = "as")]
        operator: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
    /// Continue a run after an interruption or a crash.
    #[command(after_help = "\
Examples:
  drover resume latest
  drover resume r20261202T1030-1a2b --state /var/lib/drover")]
    Resume {
        /// Run id, or `latest`.
        run_id: String,
        /// State directory.
        #[arg(long, env = "DROVER_STATE", default_value = ".drover")]
        state: String,
        /// Who resumes it (default: the OS user).
        #[arg(long = "as")]
        operator: Option<String>,
        /// Output format (see `drover run`).
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        /// Talk to a Drover server instead of the local state directory (also DROVER_SERVER;
        /// `drover login --server URL` first).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        #[command(flatten)]
        telemetry: TelemetryArgs,
    },
    /// Interrupt a run a Drover server drives, as Ctrl-C does `drover run`: no new steps start,
    /// running ones finish (asked again: they are stopped now). `drover resume` goes on.
    #[command(after_help = "\
Examples:
  drover interrupt latest --server https://drover.example:8440")]
    Interrupt {
        /// Run id, or `latest`.
        run_id: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        /// Talk to a Drover server instead of the local state directory (also DROVER_SERVER;
        /// `drover login --server URL` first).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
    },
    /// List the runs in a state directory: id, runbook, mode, status, started, outcome.
    Runs {
        /// State directory.
        #[arg(long, env = "DROVER_STATE", default_value = ".drover")]
        state: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
    /// Print a shell completion script: `drover completions bash > /etc/bash_completion.d/drover`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `drover man | man -l -`.
    Man,
    /// Log in to a Drover server with your SSH key (a challenge signed under the namespace
    /// `drover-login`); the token is kept 0600 in your config directory.
    Login {
        /// The server (also DROVER_SERVER).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// Sign with this OpenSSH private key (default: the first key in ssh-agent).
        #[arg(long, value_name = "PATH")]
        key: Option<String>,
        /// Trust the server's HTTPS certificate by its SHA-256 fingerprint (as `drover server`
        /// prints it; kept with the token). Also DROVER_SERVER_FINGERPRINT.
        #[arg(long, value_name = "SHA256")]
        fingerprint: Option<String>,
    },
    /// Open the server's web console: prints a one-time link (valid a minute) that signs your
    /// browser in as the operator you are logged in as.
    #[command(after_help = "\
Examples:
  drover console --server https://drover.example:8440")]
    Console {
        /// Open this run's live page (a run id, or `latest`).
        #[arg(long, value_name = "RUN")]
        run: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        /// The server (also DROVER_SERVER; `drover login --server URL` first).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
    },
    /// Passkeys for approving in the console's browser.
    #[command(subcommand)]
    Passkey(PasskeyCommand),
    /// Schedules: when runbooks run by themselves.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// Compliance posture: is every runbook's evidence fresh enough?
    #[command(subcommand)]
    Posture(PostureCommand),
    /// Alerts: what the server told people, and testing its sinks.
    #[command(subcommand)]
    Alerts(AlertsCommand),
    /// Serve the team: the JSON API (docs/api.md), live events, SSH-key logins; drives runs with
    /// the same engine as `drover run`.
    #[command(after_help = "\
Examples:
  drover server --operators team/operators.toml --runbooks runbooks --state /var/lib/drover
  drover server --operators ops.toml --listen 0.0.0.0:8440 --tls-cert cert.pem --tls-key key.pem

Without --tls-cert, the server generates a self-signed certificate once (STATE/tls/) and prints
its SHA-256 fingerprint: clients pin it with `drover login --server https://HOST:8440
--fingerprint FP`. On a loopback address plain HTTP is served on the same port too.")]
    Server {
        /// State directory the server owns.
        #[arg(long, env = "DROVER_STATE", default_value = ".drover")]
        state: String,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:8440")]
        listen: std::net::SocketAddr,
        /// The operator roster: who may log in, and what starts and decisions are verified
        /// against.
        #[arg(long, value_name = "FILE")]
        operators: String,
        /// The directory of runbooks operators may start.
        #[arg(long, value_name = "DIR", default_value = "runbooks")]
        runbooks: String,
        /// TLS certificate chain (PEM); without it, a self-signed certificate is generated.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<String>,
        /// TLS private key (PEM) of --tls-cert.
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<String>,
        /// Serve plain HTTP only (behind a reverse proxy that terminates TLS on this host).
        #[arg(long, conflicts_with_all = ["tls_cert", "tls_key"])]
        no_tls: bool,
        /// The server configuration (TOML): alert sinks and thresholds under `[alerts]`
        /// (docs/alerts.md). Secrets only as `env(NAME)` or `file:PATH`.
        #[arg(long, value_name = "FILE")]
        config: Option<String>,
        /// The Ed25519 key that signs evidence bundles exported through the server (default:
        /// STATE/keys/evidence.key, generated the first time).
        #[arg(long, value_name = "file:PATH")]
        evidence_key: Option<String>,
        /// This replica's id, named in the leases it holds and in /metrics (several servers on
        /// one `--state postgres://…` journal: docs/ha.md). Default: HOST-PID.
        #[arg(long, value_name = "ID")]
        replica_id: Option<String>,
        /// How long a run's lease lasts without renewal: another replica takes over a run
        /// within it after its driver dies (renewed at a third of it; at least 1s).
        #[arg(long, value_name = "DURATION", default_value = "10s")]
        lease_ttl: String,
        /// With a PostgreSQL journal: this replica's own directory (sessions, passkeys, keys,
        /// run scratch files). Default: DROVER_LOCAL_DIR, else .drover-local.
        #[arg(long, value_name = "DIR")]
        local_dir: Option<String>,
    },
    /// Approve a step that waits for approval.
    #[command(after_help = "\
Examples:
  drover approve latest approve_cutover --key ~/.ssh/id_ed25519      # runbook with a roster
  drover approve latest approve_cutover                              # ... signed by ssh-agent
  drover approve latest approve_cutover --print-statement > s.txt    # sign with OpenSSH:
  ssh-keygen -Y sign -n drover -f ~/.ssh/id_ed25519 s.txt
  drover approve latest approve_cutover --signature s.txt.sig
  drover approve latest approve_cutover --as bob --role incident-commander   # no roster")]
    Approve {
        /// Run id, or `latest`.
        run_id: String,
        /// The approval step (`rollback`: a rollback waiting for approval).
        step: String,
        /// Who approves, typed: only for runbooks without an operator roster (such approvals
        /// are marked unauthenticated).
        #[arg(long = "as")]
        operator: Option<String>,
        /// The roles the approver acts in (typed approvals; with a roster, the roster says).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Sign the approval with this OpenSSH private key (without --key, --as or
        /// --signature: the first key in ssh-agent that the roster lists).
        #[arg(long, value_name = "PATH")]
        key: Option<String>,
        /// Submit a signature made by `ssh-keygen -Y sign -n drover` over the statement that
        /// --print-statement printed.
        #[arg(long, value_name = "FILE")]
        signature: Option<String>,
        /// The signed statement (default: the signature's path without `.sig`).
        #[arg(long, value_name = "FILE")]
        statement: Option<String>,
        /// Print the statement to sign for this approval, and stop.
        #[arg(long)]
        print_statement: bool,
        /// Deny the step instead of approving it (with --reason); the step fails once its
        /// `denials` (default 1) are reached.
        #[arg(long, requires = "reason")]
        deny: bool,
        /// Approve alone, as an operator the roster marks `break_glass = true`, on a step that
        /// allows it (`break_glass = true`), with --reason: written as a distinct audit record,
        /// and the runbook's notify steps tagged `break_glass` fire.
        #[arg(long, requires = "reason", conflicts_with = "deny")]
        break_glass: bool,
        /// Why the step is denied, or the glass broken.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// The current code of your authenticator app, for approvals that need a step-up
        /// (`mfa`): it goes inside the signed statement and is accepted once.
        #[arg(long, value_name = "CODE")]
        totp: Option<String>,
        /// State directory.
        #[arg(long, env = "DROVER_STATE", default_value = ".drover")]
        state: String,
        /// Talk to a Drover server instead of the local state directory (also DROVER_SERVER;
        /// `drover login --server URL` first).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
    /// Show a run: steps, milestones, RTO and RPO against the targets.
    #[command(after_help = "\
Examples:
  drover status                       # the latest run
  drover status latest --format json")]
    Status {
        /// Run id, or `latest`.
        #[arg(default_value = "latest")]
        run_id: String,
        /// State directory.
        #[arg(long, env = "DROVER_STATE", default_value = ".drover")]
        state: String,
        /// Talk to a Drover server instead of the local state directory (also DROVER_SERVER;
        /// `drover login --server URL` first).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// A run's report for auditors and managers: RTO and RPO against the targets, the Gantt chart
    /// with the critical path, steps, backups, approvals, the audit chain, HIPAA controls.
    Report {
        /// Run id, or `latest`.
        #[arg(default_value = "latest")]
        run_id: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ReportFormat::Html)]
        format: ReportFormat,
        /// Instead of one run: RTO and RPO over every run of this runbook (its name, or its file),
        /// against the targets, as a chart and a table.
        #[arg(long, value_name = "RUNBOOK")]
        history: Option<String>,
        /// A directory with your own `report.html` / `report.md` minijinja templates.
        #[arg(long, value_name = "DIR")]
        template: Option<String>,
        /// Write here instead of standard output.
        #[arg(long, short = 'o', value_name = "FILE")]
        out: Option<String>,
        /// State directory.
        #[arg(long, env = "DROVER_STATE", default_value = ".drover")]
        state: String,
        /// Talk to a Drover server instead of the local state directory (also DROVER_SERVER;
        /// `drover login --server URL` first).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
    },
    /// Evidence bundles for auditors: export a run's, verify one offline.
    #[command(subcommand)]
    Evidence(EvidenceCommand),
}

#[derive(Subcommand)]
enum EvidenceCommand {
    /// Collect a run's evidence into a signed bundle: the runbook sources and compiled plan, the
    /// run record and its transitions, the audit log with its chain head, the report, and a
    /// manifest of SHA-256 hashes signed with Ed25519.
    Export {
        /// Run id, or `latest`.
        run_id: String,
        /// The bundle to write (a tar file).
        out: String,
        /// The signing key: `file:PATH` (`drover key generate --signing file:PATH`); with
        /// --server, the server signs with its own evidence key.
        #[arg(long)]
        signing_key: Option<String>,
        /// Also upload the bundle to `s3://bucket/key` under Object Lock in compliance mode
        /// (WORM; needs the `aws` feature and a bucket with Object Lock).
        #[arg(long, value_name = "S3_URI")]
        upload: Option<String>,
        /// How long the uploaded bundle is retained (cannot be deleted), in days.
        #[arg(long, default_value_t = 2557)]
        retain_days: u32,
        /// State directory.
        #[arg(long, env = "DROVER_STATE", default_value = ".drover")]
        state: String,
        /// Talk to a Drover server instead of the local state directory (also DROVER_SERVER;
        /// `drover login --server URL` first).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
    },
    /// Check a bundle offline: the signature, every file, the audit chain, the sources' hash.
    Verify {
        /// The bundle.
        bundle: String,
        /// The signer's public key: `file:PATH.pub` (a bare path is accepted too).
        #[arg(long)]
        public_key: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
}

/// Report formats.
#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    /// A self-contained HTML page.
    Html,
    /// Markdown.
    Md,
    /// JSON.
    Json,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print a run's audit records, one JSON object per line (--backups: those of the backup
    /// and key operations done outside runs).
    Show {
        /// Run id, or `latest`.
        #[arg(default_value = "latest")]
        run_id: String,
        /// The audit log of `drover backup create|verify|restore|rewrap` and `drover key
        /// generate`, instead of a run's.
        #[arg(long, conflicts_with = "run_id")]
        backups: bool,
        /// State directory.
        #[arg(long, env = "DROVER_STATE", default_value = ".drover")]
        state: String,
    },
    /// Check a run's hash-chained audit log against the chain head kept in the run record, and
    /// with --anchor against every signed checkpoint anchored outside the host.
    Verify {
        /// Run id, or `latest`.
        #[arg(default_value = "latest")]
        run_id: String,
        /// State directory.
        #[arg(long, env = "DROVER_STATE", default_value = ".drover")]
        state: String,
        /// The audit anchor the run wrote checkpoints to (`file:DIR` or `s3://BUCKET/PREFIX`): a log rewritten with its
        /// head is detected, naming the first checkpoint it contradicts.
        #[arg(long, value_name = "LOCATION")]
        anchor: Option<String>,
        /// Verify the audit log of backup and key operations outside runs instead of a run's.
        #[arg(long, conflicts_with = "run_id")]
        backups: bool,
        /// With --backups: re-verify every signed record against this operator roster.
        #[arg(long, value_name = "FILE", requires = "backups")]
        operators: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Make a new 256-bit key-encryption key: `drover key generate file:PATH` (mode 0600).
    Generate {
        /// Where: `file:PATH`.
        uri: String,
        /// Keep an existing valid key instead of refusing.
        #[arg(long)]
        if_missing: bool,
        /// Make an Ed25519 signing key for evidence bundles instead: PATH (private, 0600) and
        /// PATH.pub (public, for auditors).
        #[arg(long)]
        signing: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        #[command(flatten)]
        by: OperatorArgs,
    },
}

/// The key and location schemes this build supports, shown under every `backup` verb's help.
#[cfg(feature = "aws")]
const BACKUP_SCHEMES: &str = "\
Keys (--key, --from, --to):
  file:PATH          a local key-encryption key (`drover key generate`)
  aws-kms:KEY        an AWS KMS key: id, ARN or alias/NAME (GenerateDataKey, Decrypt, ReEncrypt)
Backups and locations:
  PATH               a local file (a directory of backups for `verify --sample`)
  s3://BUCKET/KEY    an object in S3 (a prefix ending in / for `verify --sample`)
  azblob://ACCOUNT/CONTAINER/PATH
                     a blob in Azure Storage (builds with `azure`; a prefix ending in / for
                     `verify --sample`); credentials: AZURE_STORAGE_CONNECTION_STRING,
                     AZURE_STORAGE_SAS_TOKEN, else the Azure sign-in chain";

/// The key and location schemes this build supports, shown under every `backup` verb's help.
#[cfg(not(feature = "aws"))]
const BACKUP_SCHEMES: &str = "\
Keys (--key, --from, --to):
  file:PATH          a local key-encryption key (`drover key generate`)
Backups and locations:
  PATH               a local file (a directory of backups for `verify --sample`)
This build has no `aws` feature: aws-kms: keys and s3:// locations are not available.";

#[derive(Subcommand)]
enum BackupCommand {
    /// Encrypt a file (or `-` for standard input) into a new backup.
    #[command(after_help = BACKUP_SCHEMES)]
    Create {
        /// The data to back up (`-` for standard input).
        input: String,
        /// The backup to write (never overwritten).
        output: String,
        /// Key-encryption key URI (schemes below).
        #[arg(long)]
        key: String,
        /// Data set name (default: the input's file name).
        #[arg(long)]
        dataset: Option<String>,
        /// When the data was captured, RFC 3339 (default: now).
        #[arg(long)]
        recovery_point: Option<String>,
        /// Plaintext bytes per chunk.
        #[arg(long, default_value_t = drover_adapters::backup::DEFAULT_CHUNK_SIZE)]
        chunk_size: u32,
        /// Put a write-once lock on it as it is written (s3:// only, in a bucket with Object
        /// Lock), read back after writing.
        #[arg(long, value_parser = ["compliance", "governance"], requires = "retain")]
        lock: Option<String>,
        /// With --lock: for how long, in days (`90d`) or calendar years (`6y`).
        #[arg(long, requires = "lock")]
        retain: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        #[command(flatten)]
        by: OperatorArgs,
    },
    /// Verify a backup, or a sample of the backups under a directory.
    #[command(after_help = BACKUP_SCHEMES)]
    Verify {
        /// A backup, or a directory of backups.
        backup: String,
        /// Key URI: with it, full authenticated decryption and the plaintext hash (in memory).
        #[arg(long)]
        key: Option<String>,
        /// Plaintext SHA-256 the backup must hold.
        #[arg(long)]
        expect_sha256: Option<String>,
        /// With a directory: fully verify this many randomly chosen backups.
        #[arg(long)]
        sample: Option<usize>,
        /// With --sample: the random seed (default: from the clock; printed).
        #[arg(long)]
        seed: Option<u64>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        #[command(flatten)]
        by: OperatorArgs,
    },
    /// Decrypt a backup to a file, atomically, after every check passed.
    #[command(after_help = BACKUP_SCHEMES)]
    Restore {
        /// The backup.
        backup: String,
        /// Where to write the plaintext.
        dest: String,
        /// Key URI.
        #[arg(long)]
        key: String,
        /// Plaintext SHA-256 the restore must match.
        #[arg(long)]
        expect_sha256: Option<String>,
        /// Replace an existing destination.
        #[arg(long)]
        force: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        #[command(flatten)]
        by: OperatorArgs,
    },
    /// Re-wrap the data key under a new key-encryption key; data chunks are unchanged.
    #[command(after_help = BACKUP_SCHEMES)]
    Rewrap {
        /// The backup.
        backup: String,
        /// The current key URI.
        #[arg(long)]
        from: String,
        /// The new key URI.
        #[arg(long)]
        to: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        #[command(flatten)]
        by: OperatorArgs,
    },
    /// Copy a backup to another location as it is: the ciphertext, no key needed. Checked
    /// against its manifest while it streams, written atomically, never over another file,
    /// and read back.
    #[command(after_help = BACKUP_SCHEMES)]
    Copy {
        /// The backup to copy.
        source: String,
        /// Where the copy goes (a file or object name; never overwritten).
        destination: String,
        /// Put a write-once lock on it as it is written (s3:// only, in a bucket with Object
        /// Lock), read back after writing.
        #[arg(long, value_parser = ["compliance", "governance"], requires = "retain")]
        lock: Option<String>,
        /// With --lock: for how long, in days (`90d`) or calendar years (`6y`).
        #[arg(long, requires = "lock")]
        retain: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
        #[command(flatten)]
        by: OperatorArgs,
    },
    /// Show a backup's header and manifest (no key needed).
    #[command(after_help = BACKUP_SCHEMES)]
    Inspect {
        /// The backup.
        backup: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
        format: CheckFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum CheckFormat {
    Text,
    Json,
}

/// Where simulated step durations come from.
#[derive(Clone, Copy, ValueEnum)]
enum DurationSource {
    /// The runbook's `estimate`s.
    Estimates,
    /// Durations measured in past runs (the journal), estimates for steps never measured.
    Measured,
}

#[derive(Clone, Copy, ValueEnum)]
enum PlanFormat {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Dot,
    Mermaid,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum ModeArg {
    Drill,
    Failover,
    Failback,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Drill => Mode::Drill,
            ModeArg::Failover => Mode::Failover,
            ModeArg::Failback => Mode::Failback,
        }
    }
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("`{s}` is not KEY=VALUE")),
    }
}

/// A run id names files in the state directory and the anchor: no path separators, no names
/// reserved for logs (`@backups`).
fn parse_run_id(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(s.to_owned())
    } else {
        Err(format!(
            "`{s}` is not a run id: use letters, digits, `.`, `_` and `-` (at most 64, not starting with `.`)"
        ))
    }
}

/// `--server URL`, else `DROVER_SERVER` (empty: none).
fn remote_server(flag: Option<String>) -> Option<String> {
    flag.or_else(|| std::env::var("DROVER_SERVER").ok())
        .filter(|s| !s.trim().is_empty())
}

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    #[cfg(feature = "aws")]
    drover_engine::anchor::register_schemes(vec![("s3://", s3_anchor::open)]);
    let cli = Cli::parse();
    let otlp = match &cli.command {
        Command::Run { telemetry, .. } | Command::Resume { telemetry, .. } => {
            telemetry.otlp.clone()
        }
        _ => None,
    };
    // A server reports what it decides on its own (takeovers, a lost lease, a stopped run) on
    // standard error.
    let log = matches!(cli.command, Command::Server { .. });
    let telemetry = telemetry::init(otlp, log);
    let code = dispatch(cli);
    telemetry.shutdown();
    code
}

fn dispatch(cli: Cli) -> ExitCode {
    match cli.command {
        Command::Lsp => lsp(),
        Command::Check {
            files,
            source,
            format,
        } => check(&files, &source, format),
        Command::Plan {
            file,
            source,
            mode,
            format,
        } => plan(&file, source, mode, format),
        Command::Graph {
            file,
            source,
            format,
        } => graph(&file, source, format),
        Command::Tabletop {
            file,
            mode,
            scenario,
            speed,
            server: Some(url),
            key,
            ..
        } => {
            let name = std::path::Path::new(&file)
                .file_name()
                .map_or_else(|| file.clone(), |n| n.to_string_lossy().into_owned());
            remote::tabletop(
                &url,
                &name,
                mode.map(|m| Mode::from(m).as_str()),
                scenario.as_deref(),
                speed,
                key.as_deref().map(std::path::Path::new),
            )
        }
        Command::Tabletop {
            file,
            source,
            mode,
            scenario,
            seed,
            speed,
            report,
            ..
        } => {
            let plan = match compiled(&file, source) {
                Ok(p) => p,
                Err(code) => return code,
            };
            tabletop_cli::tabletop(
                &plan,
                &tabletop_cli::TabletopArgs {
                    file: &file,
                    mode: mode.map(Mode::from),
                    scenario: scenario.as_deref(),
                    seed,
                    speed: if speed.is_finite() {
                        speed.max(0.0)
                    } else {
                        0.0
                    },
                    report: report.as_deref(),
                },
            )
        }
        Command::Simulate {
            file,
            source,
            mode,
            scenario,
            trials,
            seed,
            threads,
            format,
            fail_if_p95_exceeds_target,
            svg,
            durations,
            state,
            record,
        } => {
            let plan = match compiled(&file, source) {
                Ok(p) => p,
                Err(code) => return code,
            };
            sim_cli::simulate(
                &plan,
                &sim_cli::SimArgs {
                    file: &file,
                    mode: mode.map(Mode::from),
                    scenario: scenario.as_deref(),
                    trials,
                    seed,
                    threads,
                    json: matches!(format, PlanFormat::Json),
                    fail_if_p95_exceeds_target,
                    record,
                    svg: svg.as_deref(),
                    measured_from: matches!(durations, DurationSource::Measured)
                        .then(|| std::path::Path::new(state.as_str())),
                    state: std::path::Path::new(state.as_str()),
                },
            )
        }
        Command::Fmt { files, check } => fmt(&files, check),
        Command::Actions { format } => actions(format),
        Command::Runs { state, format } => {
            run_cli::runs(state.into(), matches!(format, CheckFormat::Json))
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "drover", &mut buf);
            out!("{}", String::from_utf8_lossy(&buf));
            ExitCode::SUCCESS
        }
        Command::Server {
            state,
            listen,
            operators,
            runbooks,
            tls_cert,
            tls_key,
            no_tls,
            evidence_key,
            config,
            replica_id,
            lease_ttl,
            local_dir,
        } => server_cli::serve(server_cli::ServeArgs {
            replica_id,
            lease_ttl,
            local_dir: local_dir.map(Into::into),
            config: config.map(Into::into),
            state: state.into(),
            listen,
            operators: operators.into(),
            runbooks: runbooks.into(),
            tls: match (tls_cert, tls_key) {
                (Some(c), Some(k)) => server_cli::TlsArg::Files(c.into(), k.into()),
                _ if no_tls => server_cli::TlsArg::Off,
                _ => server_cli::TlsArg::SelfSigned,
            },
            evidence_key,
        }),
        Command::Man => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let mut buf = Vec::new();
            match clap_mangen::Man::new(cmd).render(&mut buf) {
                Ok(()) => {
                    out!("{}", String::from_utf8_lossy(&buf));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    errln!("error: cannot render the man page: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Backup(b) => backup_command(b),
        Command::Key(KeyCommand::Generate {
            uri,
            if_missing,
            signing,
            format,
            by,
        }) => key_generate(
            &uri,
            if_missing,
            signing,
            matches!(format, CheckFormat::Json),
            &by,
        ),
        Command::Evidence(EvidenceCommand::Export {
            run_id,
            out,
            signing_key,
            state,
            upload,
            retain_days,
            server,
        }) => match (remote_server(server), signing_key) {
            (Some(url), None) => match remote::evidence(&url, &run_id, &out) {
                Ok(bytes) => match upload {
                    Some(u) => run_cli::upload_locked(&u, bytes, retain_days),
                    None => ExitCode::SUCCESS,
                },
                Err(code) => code,
            },
            (Some(_), Some(_)) => {
                errln!(
                    "error: with --server, the server signs the bundle with its evidence key: drop --signing-key"
                );
                ExitCode::from(2)
            }
            (None, None) => {
                errln!(
                    "error: which key signs the bundle? --signing-key file:PATH (drover key generate --signing file:PATH makes one), or --server URL to have the server sign it"
                );
                ExitCode::from(2)
            }
            (None, Some(key)) => run_cli::evidence_export(
                &run_id,
                &out,
                &key,
                state.into(),
                upload.as_deref().map(|u| (u, retain_days)),
            ),
        },
        Command::Evidence(EvidenceCommand::Verify {
            bundle,
            public_key,
            format,
        }) => run_cli::evidence_verify(&bundle, &public_key, matches!(format, CheckFormat::Json)),
        Command::Run {
            file,
            mode,
            source,
            state,
            operator,
            key,
            audit_anchor,
            declared_at,
            run_id,
            dry_run,
            concurrent,
            skip_preflight,
            format,
            telemetry: _,
            server,
        } => {
            if let Some(url) = remote_server(server) {
                let name = std::path::Path::new(&file)
                    .file_name()
                    .map_or_else(|| file.clone(), |n| n.to_string_lossy().into_owned());
                return remote::run(
                    &url,
                    &name,
                    mode.map(|m| Mode::from(m).as_str()),
                    key.as_deref().map(std::path::Path::new),
                    matches!(format, CheckFormat::Json),
                );
            }
            let (plan, sources) = match compiled_with_sources(&file, source) {
                Ok(p) => p,
                Err(code) => return code,
            };
            let mode = match plan.mode_or_first(mode.map(Mode::from)) {
                Ok(m) if mode.is_some() || plan.runbook.modes.len() == 1 => m,
                Ok(_) => {
                    errln!(
                        "error: {file} has several modes ({}); choose one with --mode",
                        modes_of(&plan)
                    );
                    return ExitCode::from(2);
                }
                Err(m) => {
                    errln!(
                        "error: runbook `{}` does not support {} mode (it has: {})",
                        plan.runbook.name,
                        m.as_str(),
                        modes_of(&plan)
                    );
                    return ExitCode::from(2);
                }
            };
            run_cli::run(run_cli::RunArgs {
                plan,
                sources,
                mode,
                state: state.into(),
                operator,
                key: key.map(Into::into),
                audit_anchor,
                declared_at,
                run_id,
                dry_run,
                concurrent,
                skip_preflight,
                json: matches!(format, CheckFormat::Json),
            })
        }
        Command::Rollback {
            run_id,
            state,
            operator,
            format,
        } => run_cli::rollback(
            &run_id,
            state.into(),
            operator,
            matches!(format, CheckFormat::Json),
        ),
        Command::Resume {
            run_id,
            state,
            operator,
            format,
            server,
            telemetry: _,
        } => match remote_server(server) {
            Some(url) => {
                if let Some(name) = operator {
                    errln!(
                        "error: with --server, who resumes is who is logged in, not typed (`--as {name}`)"
                    );
                    return ExitCode::from(2);
                }
                remote::resume(&url, &run_id, matches!(format, CheckFormat::Json))
            }
            None => run_cli::resume(
                &run_id,
                state.into(),
                operator,
                matches!(format, CheckFormat::Json),
            ),
        },
        Command::Schedule(ScheduleCommand::List {
            paths,
            count,
            state,
            format,
            server,
        }) => {
            let json = matches!(format, CheckFormat::Json);
            let count = count.clamp(1, 100);
            match remote_server(server) {
                Some(url) if paths.is_empty() => schedule_cli::list_remote(&url, count, json),
                _ => {
                    let paths = if paths.is_empty() {
                        vec!["runbooks".to_owned()]
                    } else {
                        paths
                    };
                    schedule_cli::list_local(&paths, &state, count, json)
                }
            }
        }
        Command::Posture(PostureCommand::Backups {
            inventory,
            state,
            format,
            out,
        }) => posture_cli::backups(
            &inventory,
            &state,
            match format {
                PostureFormat::Md => posture_cli::Out::Md,
                PostureFormat::Html => posture_cli::Out::Html,
                PostureFormat::Json => posture_cli::Out::Json,
            },
            out.as_deref(),
        ),
        Command::Posture(PostureCommand::Drills {
            paths,
            state,
            format,
            out,
            server,
        }) => {
            let format = match format {
                PostureFormat::Md => schedule_cli::PostureOut::Md,
                PostureFormat::Html => schedule_cli::PostureOut::Html,
                PostureFormat::Json => schedule_cli::PostureOut::Json,
            };
            match remote_server(server) {
                Some(url) if paths.is_empty() => {
                    schedule_cli::posture_remote(&url, format, out.as_deref())
                }
                _ => {
                    let paths = if paths.is_empty() {
                        vec!["runbooks".to_owned()]
                    } else {
                        paths
                    };
                    schedule_cli::posture_local(&paths, &state, format, out.as_deref())
                }
            }
        }
        Command::Alerts(AlertsCommand::List {
            server,
            state,
            format,
        }) => {
            let json = matches!(format, CheckFormat::Json);
            match (state, remote_server(server)) {
                (Some(state), _) => alerts_cli::list_local(&state, json),
                (None, Some(url)) => alerts_cli::list_remote(&url, json),
                (None, None) => alerts_cli::list_local(".drover", json),
            }
        }
        Command::Alerts(AlertsCommand::Test {
            sink,
            server,
            config,
            format,
        }) => {
            let json = matches!(format, CheckFormat::Json);
            match (config, remote_server(server)) {
                (Some(config), _) => alerts_cli::test_local(&config, &sink, json),
                (None, Some(url)) => alerts_cli::test_remote(&url, &sink, json),
                (None, None) => {
                    errln!(
                        "error: test through which server? --server URL (or DROVER_SERVER), or --config FILE to send from here"
                    );
                    ExitCode::from(2)
                }
            }
        }
        Command::Passkey(PasskeyCommand::Confirm { server, key, all }) => {
            match remote_server(server) {
                Some(url) => {
                    remote::passkey_confirm(&url, key.as_deref().map(std::path::Path::new), all)
                }
                None => {
                    errln!("error: which server? --server URL (or DROVER_SERVER)");
                    ExitCode::from(2)
                }
            }
        }
        Command::Console {
            run,
            format,
            server,
        } => match remote_server(server) {
            Some(url) => remote::console(&url, run.as_deref(), matches!(format, CheckFormat::Json)),
            None => {
                errln!("error: which server? --server URL (or DROVER_SERVER)");
                ExitCode::from(2)
            }
        },
        Command::Interrupt {
            run_id,
            format,
            server,
        } => match remote_server(server) {
            Some(url) => remote::interrupt(&url, &run_id, matches!(format, CheckFormat::Json)),
            None => {
                errln!(
                    "error: which server? --server URL (or DROVER_SERVER); a run this machine drives stops with Ctrl-C (or SIGINT/SIGTERM to its process: `drover status RUN` names it)"
                );
                ExitCode::from(2)
            }
        },
        Command::Approve {
            run_id,
            step,
            key,
            totp,
            deny,
            break_glass,
            reason,
            format,
            server,
            ..
        } if remote_server(server.clone()).is_some() => remote::approve(
            &remote_server(server).unwrap_or_default(),
            &run_id,
            &step,
            match (deny, break_glass) {
                (true, _) => ("deny", reason.as_deref()),
                (_, true) => ("break-glass", reason.as_deref()),
                _ => ("approve", None),
            },
            totp.as_deref(),
            key.as_deref().map(std::path::Path::new),
            matches!(format, CheckFormat::Json),
        ),
        Command::Approve {
            run_id,
            step,
            operator,
            roles,
            key,
            signature,
            statement,
            print_statement,
            totp,
            deny,
            break_glass,
            reason,
            state,
            format,
            ..
        } => run_cli::approve(
            &run_id,
            &step,
            run_cli::ApproveBy {
                operator,
                roles,
                key: key.map(Into::into),
                signature: signature.map(Into::into),
                statement: statement.map(Into::into),
                print_statement,
                totp,
                denial: if deny { reason.clone() } else { None },
                break_glass: if break_glass { reason } else { None },
            },
            state.into(),
            matches!(format, CheckFormat::Json),
        ),
        Command::Status {
            run_id,
            state,
            format,
            server,
        } => match remote_server(server) {
            Some(url) => remote::status(&url, &run_id, matches!(format, CheckFormat::Json)),
            None => run_cli::status(&run_id, state.into(), matches!(format, CheckFormat::Json)),
        },
        Command::Login {
            server,
            key,
            fingerprint,
        } => match remote_server(server) {
            Some(url) => remote::login(
                &url,
                key.as_deref().map(std::path::Path::new),
                fingerprint.as_deref(),
            ),
            None => {
                errln!("error: which server? --server URL (or DROVER_SERVER)");
                ExitCode::from(2)
            }
        },
        Command::Audit(AuditCommand::Verify {
            state,
            anchor,
            backups: true,
            operators,
            format,
            ..
        }) => run_cli::audit_verify_backups(
            state.into(),
            anchor.as_deref(),
            operators.as_deref(),
            matches!(format, CheckFormat::Json),
        ),
        Command::Audit(AuditCommand::Verify {
            run_id,
            state,
            anchor,
            format,
            ..
        }) => run_cli::audit_verify(
            &run_id,
            state.into(),
            anchor.as_deref(),
            matches!(format, CheckFormat::Json),
        ),
        Command::Audit(AuditCommand::Show {
            state,
            backups: true,
            ..
        }) => run_cli::audit_show_backups(state.into()),
        Command::Audit(AuditCommand::Show { run_id, state, .. }) => {
            run_cli::audit_show(&run_id, state.into())
        }
        Command::Report {
            history: Some(runbook),
            format,
            out,
            state,
            ..
        } => {
            // A file names its runbook; anything else is the name itself.
            let name = if std::path::Path::new(&runbook).is_file() {
                match compiled(&runbook, SourceArgs::default()) {
                    Ok(p) => p.runbook.name,
                    Err(code) => return code,
                }
            } else {
                runbook
            };
            run_cli::report_history(
                &name,
                state.into(),
                match format {
                    ReportFormat::Html => drover_report::Format::Html,
                    ReportFormat::Md => drover_report::Format::Markdown,
                    ReportFormat::Json => drover_report::Format::Json,
                },
                out.as_deref(),
            )
        }
        Command::Report {
            run_id,
            format,
            out,
            server,
            history: None,
            ..
        } if remote_server(server.clone()).is_some() => remote::report(
            &remote_server(server).unwrap_or_default(),
            &run_id,
            match format {
                ReportFormat::Html => "html",
                ReportFormat::Md => "md",
                ReportFormat::Json => "json",
            },
            out.as_deref(),
        ),
        Command::Report {
            run_id,
            format,
            template,
            out,
            state,
            history: None,
            ..
        } => run_cli::report(
            &run_id,
            state.into(),
            match format {
                ReportFormat::Html => drover_report::Format::Html,
                ReportFormat::Md => drover_report::Format::Markdown,
                ReportFormat::Json => drover_report::Format::Json,
            },
            template.as_deref().map(std::path::Path::new),
            out.as_deref(),
        ),
    }
}

/// A runbook's modes, for messages: `drill, failover`.
fn modes_of(plan: &drover_dsl::Plan) -> String {
    plan.runbook
        .modes
        .iter()
        .map(|m| m.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn compile(file: &str, source: SourceArgs) -> Compilation {
    let catalogue = drover_adapters::builtin_catalogue();
    let opts = CompileOptions {
        catalogue: &catalogue,
        vars: source.vars,
        operators: source.operators,
    };
    drover_dsl::compile(file, &FsLoader, &opts)
}

fn print_diagnostics(c: &Compilation) {
    let color = output::stderr_color();
    for d in &c.diagnostics {
        err!("{}", drover_dsl::render(d, &c.sources, color, 100));
    }
}

fn summary(c: &Compilation) -> (usize, usize) {
    let errors = c.diagnostics.iter().filter(|d| d.is_error()).count();
    (errors, c.diagnostics.len() - errors)
}

fn lsp() -> ExitCode {
    let catalogue = std::sync::Arc::new(drover_adapters::builtin_catalogue());
    match drover_lsp::run_stdio(catalogue) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("drover lsp: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(files: &[String], source: &SourceArgs, format: CheckFormat) -> ExitCode {
    let mut failed = false;
    let mut json = Vec::new();
    let (mut errors, mut warnings) = (0, 0);
    for f in files {
        let c = compile(f, source.clone());
        let (e, w) = summary(&c);
        errors += e;
        warnings += w;
        failed |= e > 0;
        match format {
            CheckFormat::Text => print_diagnostics(&c),
            CheckFormat::Json => {
                for d in &c.diagnostics {
                    let file = c.sources.get(d.primary.span.file);
                    let (line, col) = file.line_col(d.primary.span.start as usize);
                    json.push(serde_json::json!({
                        "file": file.name,
                        "line": line,
                        "column": col,
                        "code": d.code.as_str(),
                        "severity": d.severity,
                        "message": d.message,
                        "help": d.help,
                    }));
                }
            }
        }
    }
    match format {
        CheckFormat::Text => errln!(
            "checked {} file(s): {errors} error(s), {warnings} warning(s)",
            files.len()
        ),
        CheckFormat::Json => outln!("{}", serde_json::Value::Array(json)),
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn compiled(file: &str, source: SourceArgs) -> Result<drover_dsl::Plan, ExitCode> {
    compiled_with_sources(file, source).map(|(p, _)| p)
}

/// The plan and the source files it was compiled from.
fn compiled_with_sources(
    file: &str,
    source: SourceArgs,
) -> Result<(drover_dsl::Plan, Vec<drover_engine::journal::SourceText>), ExitCode> {
    let c = compile(file, source);
    print_diagnostics(&c);
    let sources = c
        .sources
        .files()
        .iter()
        .map(|f| drover_engine::journal::SourceText {
            name: f.name.clone(),
            text: f.text.clone(),
        })
        .collect();
    match c.plan {
        Some(p) => Ok((p, sources)),
        None => {
            let (e, _) = summary(&c);
            errln!("{file}: {e} error(s); no plan");
            Err(ExitCode::FAILURE)
        }
    }
}

fn plan(file: &str, source: SourceArgs, mode: Option<ModeArg>, format: PlanFormat) -> ExitCode {
    let plan = match compiled(file, source) {
        Ok(p) => p,
        Err(code) => return code,
    };
    match format {
        PlanFormat::Json => match plan.to_json() {
            Ok(j) => outln!("{j}"),
            Err(e) => {
                errln!("cannot serialize the plan: {e}");
                return ExitCode::FAILURE;
            }
        },
        PlanFormat::Text => {
            let mode = match plan.mode_or_first(mode.map(Mode::from)) {
                Ok(m) => m,
                Err(m) => {
                    errln!("{file} does not support mode {}", m.as_str());
                    return ExitCode::FAILURE;
                }
            };
            let a = drover_dsl::analysis::analyze(&plan, mode);
            out!("{}", drover_dsl::analysis::render_text(&plan, &a));
        }
    }
    ExitCode::SUCCESS
}

fn graph(file: &str, source: SourceArgs, format: GraphFormat) -> ExitCode {
    let plan = match compiled(file, source) {
        Ok(p) => p,
        Err(code) => return code,
    };
    let out = match format {
        GraphFormat::Dot => drover_dsl::graph::to_dot(&plan),
        GraphFormat::Mermaid => drover_dsl::graph::to_mermaid(&plan),
        GraphFormat::Json => drover_dsl::graph::to_json(&plan),
    };
    out!("{out}");
    if !out.ends_with('\n') {
        outln!();
    }
    ExitCode::SUCCESS
}

fn fmt(files: &[String], check: bool) -> ExitCode {
    let mut failed = false;
    for f in files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                errln!("{f}: cannot read: {e}");
                failed = true;
                continue;
            }
        };
        let formatted = match drover_dsl::format_source(f, &text) {
            Ok(s) => s,
            Err(e) => {
                let mut sources = drover_dsl::SourceMap::new();
                sources.add(drover_dsl::SourceFile::new(f.clone(), text));
                let color = output::stderr_color();
                for d in &e.diagnostics {
                    err!("{}", drover_dsl::render(d, &sources, color, 100));
                }
                errln!("{f}: not formatted: {e}");
                failed = true;
                continue;
            }
        };
        if formatted == text {
            continue;
        }
        if check {
            errln!("{f}: not formatted (run `drover fmt {f}`)");
            failed = true;
        } else if let Err(e) = std::fs::write(f, formatted) {
            errln!("{f}: cannot write: {e}");
            failed = true;
        } else {
            errln!("formatted {f}");
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn actions(format: CheckFormat) -> ExitCode {
    let catalogue = drover_adapters::builtin_catalogue();
    if matches!(format, CheckFormat::Json) {
        return match serde_json::to_string_pretty(catalogue.actions()) {
            Ok(j) => {
                outln!("{j}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                errln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    for a in catalogue.actions() {
        let undo = if a.builtin_undo {
            ", built-in undo"
        } else {
            ""
        };
        let timeout = a.default_timeout_ms.map_or_else(String::new, |ms| {
            format!(", default timeout {}", drover_dsl::format_duration(ms))
        });
        outln!("{}  ({:?}{undo}{timeout}) {}", a.name, a.effect, a.summary);
        for i in &a.inputs {
            let req = if i.required { "required" } else { "optional" };
            // Resources are what the drill guard checks against `production`.
            let guarded = if i.resource { "  [drill-guarded]" } else { "" };
            outln!(
                "    with {:<22} {:<18} {req:<8}  {}{guarded}",
                i.name,
                i.ty.describe(),
                i.doc
            );
        }
        for o in &a.outputs {
            outln!(
                "    out  {:<22} {:<18} {:<8}  {}",
                o.name,
                o.ty.describe(),
                "",
                o.doc
            );
        }
    }
    ExitCode::SUCCESS
}
