//! The command line for programs built on paranix: `plan` (default), `up`/`apply [PLANFILE]`, `destroy`,
//! `refresh`, `output`, `state list|show|unlock`.
//!
//! ```no_run
//! use paranix::prelude::*;
//!
//! fn main() -> std::process::ExitCode {
//!     let mut stack = Stack::new("site");
//!     stack.add(s3::Bucket::new("assets").bucket("example-site-assets"));
//!     paranix::cli::run(Project::new().stack(stack))
//! }
//! ```
//!
//! `--json` makes stdout newline-delimited JSON: one object per line, each with a `"type"`:
//!
//! | `type` | when | fields besides `type` |
//! |---|---|---|
//! | `event` | as the run goes (refresh, steps, progress, state saves) | `event` (its kind) and the [`Event`]'s fields |
//! | `plan` | after planning (`plan`, `up`, `destroy`) | the plan file's fields ([`ProjectPlan`]: `format_version`, `stacks`) |
//! | `apply` | once per stack after an apply | `stack`, `success`, `done`/`not_started` (`address`, `action`), `skipped`, `failed` (`address`, `action`, `error`), `held_back`, `outputs`, `elapsed_ms` |
//! | `refreshed` | `refresh` | `stack`, `resources`, `serial` |
//! | `outputs` | `output` | `values` (`"<stack>.<name>"`: value; sensitive ones redacted unless named) |
//! | `state_entry` | `state list` | `stack`, `address` |
//! | `state_resource` | `state show` | `stack`, `address`, `generation`, `attributes` (sensitive ones redacted) |
//! | `unlocked` | `state unlock` | `stack`, `id` |
//! | `sandbox_stopped` | `sandbox stop` | `was_running` |
//! | `error` | the run failed (the exit code is non-zero) | `kind` ([`ErrorKind`]), `message` |
//!
//! Human notes (the sandbox, the AWS request count) go to stderr. A `plan` line is itself a valid plan file.
//!
//! Environment: `PARANIX_PLAN_KEY` (at least 32 bytes of secret) signs saved plans and makes `up FILE` refuse
//! files not signed with it; `PARANIX_STATE_PASSPHRASE`/`PARANIX_STATE_KMS_KEY` encrypt secrets in state (see
//! [`crate::state::encryption`]).
//!
//! This module is the drawing layer: it prints plans, events and errors (to stdout and stderr) and returns
//! an exit code for `main` to return (a second interrupt during an apply is the one place it exits at once). Everything it does is an [`ops`] call (cargo-style: commands are thin).

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "the CLI layer is where paranix draws")]

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};

use crate::address::Address;
use crate::apply::{ApplyOptions, ApplyReport, Cancel, DEFAULT_PARALLELISM};
use crate::attr::Attr;
use crate::aws::{AwsContext, AwsOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Observer};
use crate::ops::{self, PlanRequest, Workspace};
use crate::plan::{Action, ProjectPlan, RenderOptions};
use crate::sandbox::Sandbox;
use crate::stack::Project;

/// Command-line arguments of a paranix program.
#[derive(Debug, Parser)]
#[command(
    about = "Plan and apply this program's infrastructure (paranix)",
    long_about = None,
    after_help = "Sensitive values in state are encrypted when PARANIX_STATE_PASSPHRASE (16+ characters) or \
                  PARANIX_STATE_KMS_KEY (a KMS key id, ARN or alias) is set."
)]
pub struct Cli {
    /// Directory of local state files.
    #[arg(long, global = true, env = "PARANIX_STATE_DIR", default_value = ".paranix")]
    pub state_dir: PathBuf,
    /// Only these stacks (repeatable; default: all, in order).
    #[arg(long = "stack", global = true)]
    pub stacks: Vec<String>,
    /// Machine-readable output: plans as JSON, events as JSON lines.
    #[arg(long, global = true)]
    pub json: bool,
    /// Never use colours.
    #[arg(long, global = true)]
    pub no_color: bool,
    /// Run against a local AWS emulator (moto) started for the sandbox; state under `<state-dir>/sandbox`.
    #[arg(long, global = true)]
    pub sandbox: bool,
    /// The AWS region (default: from the environment or profile).
    #[arg(long, global = true, env = "AWS_REGION")]
    pub region: Option<String>,
    /// An endpoint for every AWS service (a local emulator).
    #[arg(long, global = true, env = "AWS_ENDPOINT_URL")]
    pub endpoint_url: Option<String>,
    /// The command (default: plan).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options shared by the commands that plan.
#[derive(Debug, Default, Args)]
pub struct PlanArgs {
    /// Restrict to this resource and what it depends on (repeatable).
    #[arg(long = "target")]
    pub targets: Vec<Address>,
    /// Plan against the recorded state without reading the cloud.
    #[arg(long)]
    pub no_refresh: bool,
    /// Fail when the paranoid checks warn about anything (SSH open to the world, IMDSv1, ...).
    #[arg(long)]
    pub deny_warnings: bool,
}

/// Options shared by the commands that apply.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// Apply without asking.
    #[arg(long)]
    pub yes: bool,
    /// How many steps may run at once.
    #[arg(long, default_value_t = DEFAULT_PARALLELISM)]
    pub parallelism: usize,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show what `up` would do (the default command).
    Plan {
        /// Planning options.
        #[command(flatten)]
        plan: PlanArgs,
        /// Save the plan to this file, for `apply FILE`.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Plan, confirm and apply; or apply a saved plan exactly.
    #[command(alias = "apply")]
    Up {
        /// A plan saved with `plan --out`: planned again and applied only if every change matches the file
        /// (refused if it was edited or the state, configuration or cloud moved on). With PARANIX_PLAN_KEY set,
        /// `plan --out` signs the file and `up FILE` refuses files not signed with that key.
        planfile: Option<PathBuf>,
        /// Planning options.
        #[command(flatten)]
        plan: PlanArgs,
        /// Applying options.
        #[command(flatten)]
        apply: ApplyArgs,
    },
    /// Destroy everything the stacks manage (stacks in reverse order).
    Destroy {
        /// Planning options.
        #[command(flatten)]
        plan: PlanArgs,
        /// Applying options.
        #[command(flatten)]
        apply: ApplyArgs,
    },
    /// Read the cloud and record what it has in the state (drift included).
    Refresh,
    /// Show stack outputs (a sensitive output only when asked for by name).
    Output {
        /// Only this output, shown in full.
        name: Option<String>,
    },
    /// Inspect or repair state.
    #[command(subcommand)]
    State(StateCommand),
    /// Manage the sandbox server.
    #[command(subcommand)]
    Sandbox(SandboxCommand),
}

/// `sandbox` subcommands.
#[derive(Debug, Subcommand)]
pub enum SandboxCommand {
    /// Stop the sandbox server (its resources are gone with it; delete `<state-dir>/sandbox` too).
    Stop,
}

/// `state` subcommands.
#[derive(Debug, Subcommand)]
pub enum StateCommand {
    /// List the addresses in state.
    List,
    /// Show one resource's recorded attributes (sensitive values redacted).
    Show {
        /// The address, e.g. `aws_instance.printerfacts`.
        address: Address,
    },
    /// Release a stale lock deliberately.
    Unlock {
        /// The lock id the error message named.
        id: String,
    },
}

/// Parses the process arguments and runs the command against `project`, talking to AWS when it is
/// configured (a region from the environment, a profile or `--region`), or to the sandbox with `--sandbox`.
/// Returns the exit code.
pub fn run(project: Project) -> ExitCode {
    run_with(project, |ws| ws, std::env::args_os())
}

/// Like [`run`], with explicit arguments (the first is the program name) and a hook that adjusts the
/// [`Workspace`] (extra providers, say) before the command runs.
pub fn run_with<I, T>(project: Project, configure: impl FnOnce(Workspace) -> Workspace + 'static, args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = cli.json;
    match runtime.block_on(execute(project, Box::new(configure), cli)) {
        Ok(code) => code,
        Err(e) => {
            if json {
                json_line("error", serde_json::json!({ "kind": format!("{:?}", e.kind()), "message": e.to_string() }));
            }
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

struct Ui {
    json: bool,
}

impl Observer for Ui {
    fn on_event(&self, event: &Event) {
        if self.json {
            if let Ok(value) = serde_json::to_value(event) {
                json_line("event", value);
            }
            return;
        }
        let verb = |action: &Action, done: bool| match (action, done) {
            (Action::Create, false) => "Creating...",
            (Action::Create, true) => "Creation complete",
            (Action::Update, false) => "Modifying...",
            (Action::Update, true) => "Modifications complete",
            (Action::Delete, false) => "Destroying...",
            (Action::Delete, true) => "Destruction complete",
            (Action::Read, false) => "Reading...",
            (Action::Read, true) => "Read complete",
            (_, _) => "",
        };
        match event {
            Event::StepStarted { address, action, .. } => eprintln!("{address}: {}", verb(action, false)),
            Event::StepFinished { address, action, elapsed, id, .. } => {
                let id = id.as_ref().map(|id| format!(" [id={id}]")).unwrap_or_default();
                eprintln!("{address}: {} after {}s{id}", verb(action, true), elapsed.as_secs());
            }
            Event::StepSkipped { address, .. } => eprintln!("{address}: no change needed once its inputs were known"),
            Event::StepFailed { address, message, .. } => eprintln!("{address}: failed: {message}"),
            Event::Progress { address, message, .. } => eprintln!("{address}: {message}"),
            Event::Recovered { stack, operations } => {
                eprintln!(
                    "{stack}: taking over {} operation(s) an interrupted run left pending: {}",
                    operations.len(),
                    operations.join(", ")
                );
            }
            Event::RefreshStarted { stack, resources } => {
                eprintln!("{stack}: refreshing {resources} resource{}...", crate::error::plural(*resources));
            }
            _ => {}
        }
    }
}

type Configure = Box<dyn FnOnce(Workspace) -> Workspace>;

async fn execute(project: Project, configure: Configure, cli: Cli) -> Result<ExitCode> {
    if let Some(Command::Sandbox(SandboxCommand::Stop)) = &cli.command {
        let stopped = Sandbox::stop(&cli.state_dir)?;
        if cli.json {
            json_line("sandbox_stopped", serde_json::json!({ "was_running": stopped }));
        } else {
            println!("{}", if stopped { "Stopped the sandbox server." } else { "No sandbox server was running." });
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut options =
        AwsOptions { region: cli.region.clone(), endpoint_url: cli.endpoint_url.clone(), ..AwsOptions::default() };
    // Waiters poll every 5 s by default; a local emulator (tests) answers at once.
    if let Some(ms) = std::env::var("PARANIX_POLL_INTERVAL_MS").ok().and_then(|v| v.parse().ok()) {
        options.poll_interval = Some(std::time::Duration::from_millis(ms));
    }
    let mut state_dir = cli.state_dir.clone();
    if cli.sandbox {
        let sandbox = Sandbox::start_or_reuse(&cli.state_dir)?;
        eprintln!(
            "[sandbox] AWS is a local emulator at {} (pid {}); nothing leaves this machine.",
            sandbox.endpoint(),
            sandbox.pid
        );
        state_dir = Sandbox::dir(&cli.state_dir);
        options.endpoint_url = Some(sandbox.endpoint());
        options.region.get_or_insert_with(|| "us-east-1".to_owned());
        options.static_credentials = Some(("sandbox".to_owned(), "sandbox".to_owned()));
        // The emulator answers at once; polling it every 5 s would only slow the sandbox down.
        options.poll_interval = Some(std::time::Duration::from_millis(200));
    }
    let aws = match AwsContext::load(&options).await {
        Ok(ctx) => Some(Arc::new(ctx)),
        // No region anywhere: AWS is not configured, so plans are made offline.
        Err(e) if e.kind() == ErrorKind::Usage && !cli.sandbox => None,
        Err(e) => return Err(e),
    };
    let mut ws = Workspace::new(&state_dir).with_nix(".");
    if let Some(encryption) = crate::state::encryption::StateEncryption::from_env(aws.as_ref())? {
        ws = ws.with_state_encryption(encryption);
    }
    if let Some(aws) = &aws {
        ws = ws.with_aws(aws.clone());
    }
    if let Some(secret) = std::env::var_os("PARANIX_PLAN_KEY").filter(|v| !v.is_empty()) {
        use std::os::unix::ffi::OsStrExt as _;
        let key = crate::plan::PlanKey::new(secret.as_bytes().to_vec())
            .map_err(|e| Error::new(ErrorKind::Usage, format!("PARANIX_PLAN_KEY: {}", e.message())))?;
        ws = ws.with_plan_key(key);
    }
    let ws = configure(ws.with_deployer());
    let sandbox = cli.sandbox;
    let code = run_command(&project, &ws, cli).await;
    if let Some(aws) = &aws {
        let counts = aws.request_counts().snapshot();
        if !counts.is_empty() {
            let list: Vec<String> = counts.iter().map(|(s, n)| format!("{s} {n}")).collect();
            eprintln!(
                "{}AWS requests: {} ({})",
                if sandbox { "[sandbox] " } else { "" },
                aws.request_counts().total(),
                list.join(", ")
            );
        }
    }
    code
}

async fn run_command(project: &Project, ws: &Workspace, cli: Cli) -> Result<ExitCode> {
    let project = project.clone();
    let ws = ws.clone();
    let color = !cli.no_color && !cli.json && std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let ui = Arc::new(Ui { json: cli.json });
    let render = RenderOptions { color };
    let command = cli.command.unwrap_or(Command::Plan { plan: PlanArgs::default(), out: None });
    match command {
        Command::Plan { plan, out } => {
            let request = plan_request(&cli.stacks, &plan, false);
            let project_plan = ops::plan(&project, &ws, &request, ui.as_ref()).await?;
            show_plan(&project_plan, &request, cli.json, render, ws.aws.is_some());
            if let Some(path) = out {
                let mut saved = project_plan.clone();
                if let Some(key) = &ws.plan_key {
                    saved.sign(key);
                }
                write_private(&path, &saved.to_json())?;
                if !cli.json {
                    println!(
                        "\nSaved the plan to {}. Apply exactly this plan with `up {}`.",
                        path.display(),
                        path.display()
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Up { planfile: Some(path), apply, .. } => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                Error::new(ErrorKind::Usage, format!("cannot read plan file {}", path.display())).with_source(e)
            })?;
            let project_plan = ProjectPlan::from_json(&text)?;
            run_apply(&project, &ws, &project_plan, &apply, ui, cli.json).await
        }
        Command::Up { planfile: None, plan, apply } => {
            let request = plan_request(&cli.stacks, &plan, false);
            let project_plan = ops::plan(&project, &ws, &request, ui.as_ref()).await?;
            show_plan(&project_plan, &request, cli.json, render, ws.aws.is_some());
            if project_plan.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            confirm(&apply, "apply these changes")?;
            run_apply(&project, &ws, &project_plan, &apply, ui, cli.json).await
        }
        Command::Destroy { plan, apply } => {
            let request = plan_request(&cli.stacks, &plan, true);
            let project_plan = ops::plan(&project, &ws, &request, ui.as_ref()).await?;
            show_plan(&project_plan, &request, cli.json, render, ws.aws.is_some());
            if project_plan.is_empty() {
                return Ok(ExitCode::SUCCESS);
            }
            confirm(&apply, "destroy these resources")?;
            run_apply(&project, &ws, &project_plan, &apply, ui, cli.json).await
        }
        Command::Refresh => {
            for stack in stack_names(&project, &cli.stacks) {
                let state = ops::refresh(&project, &ws, &stack, ui.as_ref()).await?;
                if cli.json {
                    let fields = serde_json::json!({ "stack": stack, "resources": state.resources.len(), "serial": state.serial });
                    json_line("refreshed", fields);
                } else {
                    println!("{stack}: refreshed {} resources (state serial {})", state.resources.len(), state.serial);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Output { name } => {
            let mut all = serde_json::Map::new();
            for stack in stack_names(&project, &cli.stacks) {
                let outputs = ops::outputs(&project, &ws, &stack, name.is_some()).await?;
                for (k, v) in outputs {
                    if name.as_ref().is_none_or(|n| *n == k) {
                        if !cli.json {
                            let shown = match &v {
                                Attr::Str(s) if name.is_some() => s.clone(),
                                other => other.to_json().to_string(),
                            };
                            if name.is_some() { println!("{shown}") } else { println!("{stack}.{k} = {shown}") }
                        }
                        all.insert(format!("{stack}.{k}"), v.to_json());
                    }
                }
            }
            if let Some(n) = &name
                && all.is_empty()
            {
                return Err(Error::new(ErrorKind::Usage, format!("no output {n:?} is recorded")));
            }
            if cli.json {
                json_line("outputs", serde_json::json!({ "values": serde_json::Value::Object(all) }));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::State(StateCommand::List) => {
            for stack in stack_names(&project, &cli.stacks) {
                let state = ops::state(&project, &ws, &stack).await?;
                for address in state.resources.keys() {
                    if cli.json {
                        json_line("state_entry", serde_json::json!({ "stack": stack, "address": address.to_string() }));
                    } else {
                        println!("{stack}: {address}");
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::State(StateCommand::Show { address }) => {
            for stack_name in stack_names(&project, &cli.stacks) {
                let state = ops::state(&project, &ws, &stack_name).await?;
                if let Some(resource) = state.resources.get(&address) {
                    let schema = project.get(&stack_name).and_then(|s| s.node(&address)).map(|n| n.schema);
                    let mut all = resource.outputs.clone();
                    all.extend(resource.inputs.clone());
                    let shown = crate::plan::planner::redact(schema, &all);
                    let json: serde_json::Map<_, _> = shown.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
                    if cli.json {
                        let fields = serde_json::json!({
                            "stack": stack_name,
                            "address": address.to_string(),
                            "generation": resource.generation,
                            "attributes": json,
                        });
                        json_line("state_resource", fields);
                    } else {
                        println!("# {address} (stack {stack_name}, generation {})", resource.generation);
                        println!("{}", serde_json::to_string_pretty(&json).unwrap_or_default());
                    }
                    return Ok(ExitCode::SUCCESS);
                }
            }
            Err(Error::new(ErrorKind::Usage, format!("{address} is not in any selected stack's state")))
        }
        Command::Sandbox(SandboxCommand::Stop) => Ok(ExitCode::SUCCESS),
        Command::State(StateCommand::Unlock { id }) => {
            let names = stack_names(&project, &cli.stacks);
            let mut last = None;
            for stack in &names {
                match ops::unlock(&project, &ws, stack, &id).await {
                    Ok(()) => {
                        if cli.json {
                            json_line("unlocked", serde_json::json!({ "stack": stack, "id": id }));
                        } else {
                            println!("Released lock {id} of stack {stack}.");
                        }
                        return Ok(ExitCode::SUCCESS);
                    }
                    Err(e) => last = Some(e),
                }
            }
            Err(last.unwrap_or_else(|| Error::new(ErrorKind::Usage, "no stack selected")))
        }
    }
}

fn stack_names(project: &Project, selected: &[String]) -> Vec<String> {
    if selected.is_empty() { project.stacks().iter().map(|s| s.name().to_owned()).collect() } else { selected.to_vec() }
}

fn plan_request(stacks: &[String], plan: &PlanArgs, destroy: bool) -> PlanRequest {
    PlanRequest {
        stacks: stacks.to_vec(),
        targets: plan.targets.clone(),
        no_refresh: plan.no_refresh,
        destroy,
        deny_warnings: plan.deny_warnings,
    }
}

fn show_plan(plan: &ProjectPlan, request: &PlanRequest, json: bool, render: RenderOptions, aws: bool) {
    if json {
        json_line("plan", serde_json::to_value(plan).unwrap_or_default());
        return;
    }
    print!("{}", plan.render(&render));
    let unread: Vec<&str> = plan.stacks.iter().filter(|p| p.state.is_none()).map(|p| p.stack.as_str()).collect();
    if request.no_refresh {
        println!("\nNote: planned against the recorded state without reading AWS (--no-refresh).");
    } else if aws {
        // AWS was consulted wherever there was something to read.
    } else if unread.len() == plan.stacks.len() {
        println!("\nNote: planned without AWS: no stack has state yet, so nothing was read from the cloud.");
    } else if !unread.is_empty() {
        println!("\nNote: stacks without state yet ({}) were planned without reading AWS.", unread.join(", "));
    }
}

fn confirm(apply: &ApplyArgs, what: &str) -> Result<()> {
    if apply.yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::new(ErrorKind::Usage, format!("refusing to {what} without --yes: stdin is not a terminal")));
    }
    print!("\nDo you want to {what}? Only 'yes' is accepted: ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Error::new(ErrorKind::Io, "cannot read the answer").with_source(e))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Cancelled, "not confirmed; nothing was changed"))
    }
}

async fn run_apply(
    project: &Project,
    ws: &Workspace,
    plan: &ProjectPlan,
    apply: &ApplyArgs,
    ui: Arc<Ui>,
    json: bool,
) -> Result<ExitCode> {
    let cancel = Cancel::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
            return;
        };
        // First SIGINT or SIGTERM: stop scheduling, let steps in flight finish and be recorded.
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        eprintln!("\nInterrupted: no new step will start; waiting for the steps in flight, then saving state.");
        on_signal.cancel();
        // Second: leave now. The state was written after every finished step; steps still in flight stay
        // recorded as pending operations, and the lock is left for `state unlock` after checking them.
        tokio::select! { _ = int.recv() => {}, _ = term.recv() => {} }
        eprintln!("Interrupted again: exiting now; the state holds every finished step.");
        // No destructor runs on the way out: close the SSH masters and remove the key copies now.
        crate::nixos::ssh::close_all_now();
        std::process::exit(130);
    });
    let options = ApplyOptions { parallelism: apply.parallelism, observer: ui, cancel, budget: None };
    let reports = ops::apply(project, ws, plan, &options).await?;
    if json {
        for r in &reports {
            json_line("apply", apply_report_json(r));
        }
    } else {
        summarise(&reports);
    }
    for report in reports {
        report.into_result()?;
    }
    Ok(ExitCode::SUCCESS)
}

fn summarise(reports: &[ApplyReport]) {
    for r in reports {
        if let Some(why) = &r.held_back {
            println!("\n{}: not started ({why}).", r.stack);
            continue;
        }
        let count = |a: Action| r.done.iter().filter(|(_, x)| *x == a).count();
        println!(
            "\n{}: {} created, {} updated, {} destroyed, {} skipped{}.",
            r.stack,
            count(Action::Create),
            count(Action::Update),
            count(Action::Delete),
            r.skipped.len(),
            if r.failed.is_empty() { String::new() } else { format!(", {} FAILED", r.failed.len()) }
        );
        for (k, v) in &r.outputs {
            println!("  {k} = {}", v.to_json());
        }
    }
}

/// Prints one line of `--json` output: `fields` (an object) with `"type": kind` first.
fn json_line(kind: &str, fields: serde_json::Value) {
    let mut line = serde_json::Map::new();
    line.insert("type".into(), kind.into());
    if let serde_json::Value::Object(fields) = fields {
        line.extend(fields);
    }
    println!("{}", serde_json::Value::Object(line));
}

/// An apply report as a `--json` line's fields.
fn apply_report_json(r: &ApplyReport) -> serde_json::Value {
    let steps = |steps: &[(Address, Action)]| -> Vec<serde_json::Value> {
        steps.iter().map(|(a, x)| serde_json::json!({ "address": a.to_string(), "action": x })).collect()
    };
    serde_json::json!({
        "stack": r.stack,
        "success": r.is_success(),
        "done": steps(&r.done),
        "skipped": r.skipped.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "failed": r.failed.iter().map(|(a, x, e)| serde_json::json!({ "address": a.to_string(), "action": x, "error": e })).collect::<Vec<_>>(),
        "not_started": steps(&r.not_started),
        "held_back": r.held_back,
        "outputs": r.outputs.iter().map(|(k, v)| (k.clone(), v.to_json())).collect::<serde_json::Map<_, _>>(),
        "elapsed_ms": r.elapsed.as_millis() as u64,
    })
}

fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    crate::state::write_private_file(path, text.as_bytes())
        .map_err(|e| Error::new(ErrorKind::Io, format!("cannot write {}", path.display())).with_source(e))
}
