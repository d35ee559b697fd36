//! Operations on a [`Project`]: plan, apply, refresh, outputs, state listing and unlocking. Every command of
//! [`crate::cli`] is a thin wrapper around one of these (as cargo's commands wrap `cargo::ops`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::address::{Address, Mode};
use crate::apply::{ApplyOptions, ApplyReport, apply as apply_stack};
use crate::attr::{Attr, Attrs};
use crate::aws::AwsContext;
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Observer};
use crate::plan::{Action, Plan, PlanKey, PlanOptions, ProjectPlan, plan as plan_stack};
use crate::provider::{Observed, Provider, Providers, ReadRequest, StepContext};
use crate::stack::{Backend, Project, Stack};
use crate::state::encryption::{EncryptingStore, Sensitivity, StateEncryption};
use crate::state::{LocalStore, ResourceState, S3Store, State, StateStore};

/// Where a run keeps local state, how it reaches AWS, and which providers it talks through.
#[derive(Clone, Debug)]
pub struct Workspace {
    /// The directory of stacks with [`Backend::Local`] (`.paranix` by default).
    pub state_dir: PathBuf,
    /// Providers by kind. The remote state reader is always present.
    pub providers: Providers,
    /// AWS, when configured: S3 state stores and the AWS providers use it.
    pub aws: Option<Arc<AwsContext>>,
    /// Keep every stack's state in `state_dir`, whatever its backend says (tests, experiments).
    pub local_state_only: bool,
    /// Encrypts sensitive values in state, when set (see [`crate::state::encryption`]).
    pub encryption: Option<Arc<StateEncryption>>,
    /// Signs plan files and refuses files not signed with it, when set (see [`PlanKey`]).
    pub plan_key: Option<PlanKey>,
}

impl Workspace {
    /// A workspace keeping local state in `state_dir`, with no cloud providers (offline planning only).
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        let workspace = Workspace {
            state_dir: state_dir.into(),
            providers: Providers::new(),
            aws: None,
            local_state_only: false,
            encryption: None,
            plan_key: None,
        };
        workspace.with_remote_state_reader()
    }

    /// (Re)registers the remote state reader with the workspace's current settings.
    fn with_remote_state_reader(mut self) -> Self {
        let reader = RemoteStateReader {
            state_dir: self.state_dir.clone(),
            aws: self.aws.clone(),
            local_state_only: self.local_state_only,
            encryption: self.encryption.clone(),
        };
        self.providers = self.providers.register(&["remote_state"], Arc::new(reader));
        self
    }

    /// Signs the plan files this workspace saves with `key` and refuses to apply files not signed with it.
    pub fn with_plan_key(mut self, key: PlanKey) -> Self {
        self.plan_key = Some(key);
        self
    }

    /// Encrypts sensitive values in every stack's state with `encryption` (and decrypts them on load).
    pub fn with_state_encryption(mut self, encryption: StateEncryption) -> Self {
        self.encryption = Some(Arc::new(encryption));
        self.with_remote_state_reader()
    }

    /// Talks to AWS through `aws`: registers the providers of every AWS kind and enables S3 state.
    pub fn with_aws(mut self, aws: Arc<AwsContext>) -> Self {
        self.providers = crate::aws::providers(aws.clone(), self.providers);
        self.aws = Some(aws);
        self.with_remote_state_reader()
    }

    /// Builds NixOS images with the local Nix, resolving their paths against `root` (the project root) and
    /// keeping GC roots for built images under `<state_dir>/gcroots`.
    pub fn with_nix(mut self, root: impl Into<PathBuf>) -> Self {
        let builder = crate::nixos::ImageBuilder::new(root, self.state_dir.join("gcroots"));
        self.providers = self.providers.register(&["nixos_image", "nixos_system"], Arc::new(builder));
        self
    }

    /// Deploys NixOS systems over SSH, keeping each deploy's control socket and temporary key in a private
    /// directory under the system's temporary directory (socket paths must stay short), removed when the
    /// deploy ends. Directories and SSH masters left there by killed runs are cleaned first.
    pub fn with_deployer(mut self) -> Self {
        // What killed runs left there (SSH masters, key copies) goes now, whatever this run does next.
        crate::nixos::ssh::clean_leftovers(&std::env::temp_dir());
        let mut deployer = crate::nixos::Deployer::new(std::env::temp_dir());
        if let Some(aws) = &self.aws {
            deployer = deployer.with_aws(aws.clone());
        }
        self.providers = self.providers.register(&["nixos_deployment"], Arc::new(deployer));
        self
    }

    /// Adds providers (in addition to the remote state reader).
    pub fn with_providers(mut self, configure: impl FnOnce(Providers) -> Providers) -> Self {
        self.providers = configure(self.providers);
        self
    }

    /// Keeps every stack's state in the state directory, whatever its backend says.
    pub fn with_local_state_only(mut self) -> Self {
        self.local_state_only = true;
        self.with_remote_state_reader()
    }

    /// The state store of `stack`; fails for S3 state when AWS is not configured.
    pub fn store(&self, stack: &Stack) -> Result<Box<dyn StateStore>> {
        let backend = if self.local_state_only { &Backend::Local } else { stack.state_backend() };
        // Sensitive attributes: as the declared kinds say, and by name for resources no longer declared.
        let schemas: BTreeMap<Address, &'static crate::schema::Schema> =
            stack.nodes().iter().map(|n| (n.address.clone(), n.schema)).collect();
        let sensitive: Sensitivity = Arc::new(move |address: &Address, name: &str| match schemas.get(address) {
            Some(schema) => schema.is_sensitive(name),
            None => crate::plan::looks_secret(name),
        });
        let inner = store_for(&self.state_dir, self.aws.as_ref(), stack.name(), backend)?;
        Ok(Box::new(EncryptingStore::new(
            inner,
            self.encryption.clone(),
            sensitive,
            self.state_dir.join("seen"),
            stack.name(),
        )))
    }
}

fn store_for(
    state_dir: &std::path::Path,
    aws: Option<&Arc<AwsContext>>,
    stack: &str,
    backend: &Backend,
) -> Result<Box<dyn StateStore>> {
    Ok(match backend {
        Backend::Local => Box::new(LocalStore::new(state_dir, stack)),
        Backend::LocalDir { dir } => Box::new(LocalStore::new(dir, stack)),
        Backend::S3 { bucket, key } => match aws {
            Some(aws) => Box::new(S3Store::new(aws.clone(), bucket, key, stack)),
            None => {
                return Err(Error::new(
                    ErrorKind::NoProvider,
                    format!("stack {stack:?} keeps its state in s3://{bucket}/{key}, and AWS is not configured"),
                ));
            }
        },
    })
}

/// The stack with the inputs providers complete before planning (a Nix image's derivation), and the notes
/// they left about what they could not work out.
pub async fn prepare(stack: &Stack, providers: &Providers) -> Result<(Stack, Vec<String>)> {
    let mut prepared = stack.clone();
    let mut notes = Vec::new();
    for node in stack.nodes() {
        let Ok(provider) = providers.get(node.address.kind()) else { continue };
        let (inputs, note) = provider.prepare(&node.address, &node.inputs).await?;
        if inputs != node.inputs {
            prepared.set_inputs(&node.address, inputs);
        }
        notes.extend(note);
    }
    Ok((prepared, notes))
}

/// Inputs a provider can only work out once references are resolved (a NixOS system whose values include an
/// instance's address): with the plan's resolved inputs of each resource whose declaration left fields
/// unknown, the provider prepares again; the fields it completes are written into the stack. `None` when
/// nothing was completed.
async fn prepare_resolved(
    stack: &Stack,
    plan: &Plan,
    providers: &Providers,
    notes: &mut Vec<String>,
) -> Result<Option<Stack>> {
    let mut completed = stack.clone();
    let mut any = false;
    for node in stack.nodes() {
        let placeholders: Vec<&String> =
            node.inputs.iter().filter(|(_, v)| matches!(v, Attr::Unknown)).map(|(k, _)| k).collect();
        // Only resources waiting on references: the others were prepared with everything they have.
        let waits_on_references = node.inputs.iter().any(|(name, v)| !placeholders.contains(&name) && !v.is_known());
        if placeholders.is_empty() || !waits_on_references {
            continue;
        }
        let (Ok(provider), Some(after)) =
            (providers.get(node.address.kind()), plan.change(&node.address).and_then(|c| c.after.as_ref()))
        else {
            continue;
        };
        let mut resolved = Attrs::new();
        for (name, declared) in &node.inputs {
            let value = if matches!(declared, Attr::Unknown) {
                Attr::Unknown
            } else {
                after.get(name).cloned().unwrap_or(Attr::Null)
            };
            resolved.insert(name.clone(), value);
        }
        if resolved.iter().any(|(name, v)| !placeholders.contains(&name) && !v.is_known()) {
            continue; // still depends on something this run changes: worked out at apply time
        }
        let (prepared, note) = provider.prepare(&node.address, &resolved).await?;
        notes.extend(note);
        let mut inputs = node.inputs.clone();
        for name in placeholders {
            if let Some(value) = prepared.get(name).filter(|v| v.is_known()) {
                inputs.insert(name.clone(), value.clone());
                any = true;
            }
        }
        completed.set_inputs(&node.address, inputs);
    }
    Ok(any.then_some(completed))
}

/// The fields [`prepare_resolved`] completed at plan time, taken from the plan, so apply works from
/// exactly what the plan showed.
fn complete_from_plan(stack: &Stack, plan: &Plan) -> Stack {
    let mut completed = stack.clone();
    for node in stack.nodes() {
        let Some(after) = plan.change(&node.address).and_then(|c| c.after.as_ref()) else { continue };
        let mut inputs = node.inputs.clone();
        let mut changed = false;
        for (name, value) in inputs.iter_mut() {
            if matches!(value, Attr::Unknown)
                && let Some(planned) = after.get(name).filter(|v| v.is_known())
            {
                *value = planned.clone();
                changed = true;
            }
        }
        if changed {
            completed.set_inputs(&node.address, inputs);
        }
    }
    completed
}

/// Without state encryption, a note naming the sensitive values this plan writes to the state in clear.
fn clear_secrets_note(stack: &Stack, plan: &Plan) -> Option<String> {
    let mut secrets = Vec::new();
    let written = |action: Action| matches!(action, Action::Create | Action::Update | Action::Replace);
    for change in plan.changes.iter().filter(|c| written(c.action)) {
        let (Some(node), Some(after)) = (stack.node(&change.address), &change.after) else { continue };
        for (name, value) in after {
            if node.schema.is_sensitive(name) && *value != Attr::Null {
                secrets.push(format!("{}.{name}", change.address));
            }
        }
    }
    for output in plan.outputs.iter().filter(|o| o.sensitive && written(o.action)) {
        secrets.push(format!("output {}", output.name));
    }
    (!secrets.is_empty()).then(|| {
        format!(
            "the state of stack {:?} will hold {} in clear (mode 0600, but unencrypted): set {} (16+ \
             characters) or {} to encrypt sensitive values in state",
            stack.name(),
            secrets.join(", "),
            crate::state::encryption::PASSPHRASE_ENV,
            crate::state::encryption::KMS_KEY_ENV
        )
    })
}

/// What to plan.
#[derive(Clone, Debug, Default)]
pub struct PlanRequest {
    /// Stacks to plan (empty: all, in project order).
    pub stacks: Vec<String>,
    /// Restrict to these addresses and their dependencies.
    pub targets: Vec<Address>,
    /// Skip reading the cloud; plan against the recorded state.
    pub no_refresh: bool,
    /// Plan to destroy everything (stacks in reverse order).
    pub destroy: bool,
    /// Fail when the paranoid checks warn about anything.
    pub deny_warnings: bool,
}

fn selected<'p>(project: &'p Project, names: &[String], reverse: bool) -> Result<Vec<&'p Stack>> {
    for name in names {
        if project.get(name).is_none() {
            let known: Vec<&str> = project.stacks().iter().map(Stack::name).collect();
            return Err(Error::new(ErrorKind::Usage, format!("no stack {name:?}; stacks: {}", known.join(", "))));
        }
    }
    let mut stacks: Vec<&Stack> =
        project.stacks().iter().filter(|s| names.is_empty() || names.iter().any(|n| n == s.name())).collect();
    if reverse {
        stacks.reverse();
    }
    Ok(stacks)
}

/// Plans the requested stacks in order. A stack reading another's outputs through
/// [`RemoteState`](crate::stack::RemoteState) sees that stack's *planned* outputs when both are planned in
/// this run (unknown where the upstream plan changes them).
pub async fn plan(
    project: &Project,
    ws: &Workspace,
    request: &PlanRequest,
    observer: &dyn Observer,
) -> Result<ProjectPlan> {
    project.check()?;
    let state_buckets: Vec<String> = project
        .stacks()
        .iter()
        .filter_map(|s| match s.state_backend() {
            Backend::S3 { bucket, .. } => Some(bucket.clone()),
            _ => None,
        })
        .collect();
    let mut upstream: BTreeMap<String, Attrs> = BTreeMap::new();
    let mut plans = Vec::new();
    for stack in selected(project, &request.stacks, request.destroy)? {
        let (stack, mut notes) = prepare(stack, &ws.providers).await?;
        let stack = &stack;
        let prior = match ws.store(stack) {
            Ok(store) => store.load().await?.unwrap_or_else(|| State::new(stack.name())),
            // Offline: state that only AWS holds is taken as empty, and the plan says so.
            Err(e) if e.kind() == ErrorKind::NoProvider && ws.aws.is_none() => {
                notes.push(format!("{}: planned as if it were empty", e.message()));
                State::new(stack.name())
            }
            Err(e) => return Err(e),
        };
        if !prior.pending.is_empty() {
            let ops: Vec<String> = prior.pending.iter().map(|p| format!("{:?} {}", p.operation, p.address)).collect();
            notes.push(format!(
                "an interrupted run left {} operation(s) pending ({}); they are planned again, and creates reuse their \
                 idempotency tokens, so nothing is made twice",
                ops.len(),
                ops.join(", ")
            ));
        }
        let refreshed = refresh_state(stack, &prior, &ws.providers, &upstream, !request.no_refresh, observer).await?;
        let options = PlanOptions {
            destroy: request.destroy,
            targets: request.targets.clone(),
            refreshed: !request.no_refresh,
            state_buckets: state_buckets.clone(),
        };
        let mut plan = plan_stack(stack, &prior, &refreshed, &options)?;
        if let Some(completed) = prepare_resolved(stack, &plan, &ws.providers, &mut notes).await? {
            plan = plan_stack(&completed, &prior, &refreshed, &options)?;
        }
        if ws.encryption.is_none() {
            notes.extend(clear_secrets_note(stack, &plan));
        }
        plan.notes.extend(notes);
        upstream.insert(stack.name().to_owned(), planned_outputs(&plan, &prior));
        plans.push(plan);
    }
    let warnings: Vec<String> = plans.iter().flat_map(|p| &p.warnings).map(ToString::to_string).collect();
    if request.deny_warnings && !warnings.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "--deny-warnings: the configuration has {} security warning(s):\n  - {}",
                warnings.len(),
                warnings.join("\n  - ")
            ),
        ));
    }
    Ok(ProjectPlan::made_here(plans))
}

fn planned_outputs(plan: &Plan, prior: &State) -> Attrs {
    let mut values: Attrs = prior.outputs.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect();
    for o in &plan.outputs {
        match (&o.after, o.action) {
            (_, Action::Delete) | (None, _) => {
                values.remove(&o.name);
            }
            (Some(_), _) if o.sensitive => {
                // The real value stays out of plans; downstream sees it as unknown unless it is unchanged.
                if o.action != Action::NoOp {
                    values.insert(o.name.clone(), Attr::Unknown);
                }
            }
            (Some(v), _) => {
                values.insert(o.name.clone(), if v.is_known() { v.clone() } else { Attr::Unknown });
            }
        }
    }
    values
}

/// Reads what the cloud has for every resource in `prior` (batched: one provider call per kind) and the
/// values of the stack's data sources. With `read_cloud` false, managed resources are taken as recorded.
pub async fn refresh_state(
    stack: &Stack,
    prior: &State,
    providers: &Providers,
    upstream: &BTreeMap<String, Attrs>,
    read_cloud: bool,
    observer: &dyn Observer,
) -> Result<State> {
    let mut refreshed = prior.clone();
    if read_cloud {
        let managed: Vec<(&Address, &ResourceState)> = prior.managed().collect();
        if !managed.is_empty() {
            observer.on_event(&Event::RefreshStarted { stack: stack.name().to_owned(), resources: managed.len() });
        }
        let mut by_kind: BTreeMap<&str, Vec<(&Address, &ResourceState)>> = BTreeMap::new();
        for (address, state) in managed {
            by_kind.entry(address.kind()).or_default().push((address, state));
        }
        for (kind, items) in by_kind {
            let provider = providers.get(kind).map_err(|e| {
                Error::new(
                    e.kind(),
                    format!(
                        "{e}, so stack {:?} cannot be refreshed; plan with --refresh=false to use the recorded state",
                        stack.name()
                    ),
                )
            })?;
            // The configuration's inputs, references resolved against the recorded state where it can.
            let configured: Vec<Option<Attrs>> = items
                .iter()
                .map(|(address, _)| {
                    stack.node(address).map(|node| {
                        let mut lookup = |r: &crate::attr::Reference| {
                            let recorded = prior.resources.get(&r.address)?;
                            recorded.outputs.get(&r.attribute).or_else(|| recorded.inputs.get(&r.attribute)).cloned()
                        };
                        node.inputs.iter().map(|(k, v)| (k.clone(), v.resolve(&mut lookup))).collect()
                    })
                })
                .collect();
            let requests: Vec<ReadRequest<'_>> = items
                .iter()
                .zip(&configured)
                .map(|((address, state), configured)| ReadRequest {
                    address,
                    schema: stack.node(address).map_or(&crate::stack::REMOTE_STATE, |n| n.schema),
                    inputs: &state.inputs,
                    outputs: &state.outputs,
                    configured: configured.as_ref(),
                })
                .collect();
            let found = provider.read(kind, &requests).await?;
            for ((address, state), observed) in items.iter().zip(found) {
                match observed {
                    Some(o) => {
                        refreshed.resources.insert(
                            (*address).clone(),
                            ResourceState { inputs: o.inputs, outputs: o.outputs, ..(*state).clone() },
                        );
                    }
                    None => {
                        refreshed.resources.remove(*address);
                    }
                }
            }
        }
    }
    for node in stack.nodes().iter().filter(|n| n.address.mode() == Mode::Data) {
        let values = match upstream.get(node.address.name()) {
            Some(values) if node.address.kind() == "remote_state" => {
                Some(Observed { inputs: node.inputs.clone(), outputs: values.clone() })
            }
            _ => {
                let provider = providers.get(node.address.kind())?;
                let empty = Attrs::new();
                let request = ReadRequest {
                    address: &node.address,
                    schema: node.schema,
                    inputs: &node.inputs,
                    outputs: &empty,
                    configured: None,
                };
                provider.read(node.address.kind(), &[request]).await?.pop().flatten()
            }
        };
        match values {
            Some(o) => {
                refreshed.resources.insert(
                    node.address.clone(),
                    ResourceState { inputs: o.inputs, outputs: o.outputs, dependencies: Vec::new(), generation: 0 },
                );
            }
            None => {
                refreshed.resources.remove(&node.address);
            }
        }
    }
    Ok(refreshed)
}

/// Applies a project plan: locks every planned stack, checks that no state moved since the plan was made
/// (refusing before the first mutation otherwise), then applies stack by stack, stopping at the first
/// stack that fails. Locks are released on every path.
///
/// A plan that is not exactly as [`plan`] made it in this process (read from a file, or changed since) is an
/// approval, not an instruction: with a plan key its signature is checked first, then the project is planned
/// again with the request the file records, and the file is refused ([`ErrorKind::StalePlan`], before any
/// mutation) unless every change and output matches field for field. What runs is the plan made now, so an
/// edited file can never delete, replace or change more than planning shows.
pub async fn apply(
    project: &Project,
    ws: &Workspace,
    plan: &ProjectPlan,
    options: &ApplyOptions,
) -> Result<Vec<ApplyReport>> {
    project.check()?;
    let planned_again;
    let plan = if plan.is_as_planned() {
        plan
    } else {
        if let Some(key) = &ws.plan_key {
            plan.check_signature(key)?;
        }
        planned_again = plan_again(project, ws, plan, options.observer.as_ref()).await?;
        &planned_again
    };
    let mut work: Vec<(Stack, &Plan, Box<dyn StateStore>)> = Vec::new();
    for p in &plan.stacks {
        let stack = project.get(&p.stack).ok_or_else(|| {
            Error::new(
                ErrorKind::StalePlan,
                format!("the plan is for stack {:?}, which the project does not have", p.stack),
            )
        })?;
        let store = ws.store(stack)?;
        let prepared = complete_from_plan(&prepare(stack, &ws.providers).await?.0, p);
        work.push((prepared, p, store));
    }
    let operation = if plan.stacks.iter().any(|p| p.destroy) { "destroy" } else { "apply" };
    let mut locked = Vec::new();
    let result = async {
        // Lock every stack and check that none moved since the plan, before the first mutation. A stack
        // whose state bucket does not exist yet (an earlier stack of this run creates it) has no state to
        // move; it is locked and checked when its turn comes.
        let mut states: Vec<Option<State>> = Vec::new();
        for (i, (stack, p, store)) in work.iter().enumerate() {
            match store.lock(operation).await {
                Ok(_) => locked.push(i),
                Err(e) if e.kind() == ErrorKind::BackendMissing && p.state.is_none() => {
                    states.push(None);
                    continue;
                }
                Err(e) => return Err(e),
            }
            let state = store.load().await?.unwrap_or_else(|| State::new(stack.name()));
            crate::apply::check_fresh(p, stack, &state)?;
            states.push(Some(state));
        }
        // Stacks run as soon as the stacks they depend on are done, the independent ones at the same time, all
        // under one budget of `parallelism` steps. After a failure no further stack starts; each one left is
        // reported as held back.
        let stacks: Vec<&Stack> = work.iter().map(|(stack, _, _)| stack).collect();
        let destroy = plan.stacks.iter().any(|p| p.destroy);
        let deps = stack_dependencies(&stacks, destroy);
        let options = ApplyOptions {
            budget: Some(Arc::new(tokio::sync::Semaphore::new(options.parallelism.max(1)))),
            ..options.clone()
        };
        let mut states: Vec<Option<Option<State>>> = states.into_iter().map(Some).collect();
        let mut reports: Vec<Option<ApplyReport>> = work.iter().map(|_| None).collect();
        let mut running = futures::stream::FuturesUnordered::new();
        let mut failed: Option<String> = None;
        loop {
            if failed.is_none() {
                for i in 0..work.len() {
                    let ready = states[i].is_some()
                        && deps[i].iter().all(|&d| reports[d].as_ref().is_some_and(ApplyReport::is_success));
                    if !ready {
                        continue;
                    }
                    let state = states[i].take().expect("checked above");
                    let (stack, p, store) = (&work[i].0, work[i].1, &work[i].2);
                    let (providers, options) = (&ws.providers, &options);
                    running.push(async move {
                        let (state, newly_locked) = match state {
                            Some(state) => (state, false),
                            None => {
                                store.lock(operation).await?;
                                let state = store.load().await?.unwrap_or_else(|| State::new(stack.name()));
                                crate::apply::check_fresh(p, stack, &state)?;
                                (state, true)
                            }
                        };
                        let report = apply_stack(p, stack, providers, store.as_ref(), state, options).await;
                        Ok::<_, Error>((i, newly_locked, report))
                    });
                }
            }
            let Some(finished) = futures::StreamExt::next(&mut running).await else { break };
            let (i, newly_locked, report) = finished?;
            if newly_locked {
                locked.push(i);
            }
            let report = report?;
            if !report.is_success() && failed.is_none() {
                failed = Some(report.stack.clone());
            }
            reports[i] = Some(report);
        }
        Ok::<_, Error>(
            reports
                .into_iter()
                .enumerate()
                .filter_map(|(i, report)| match report {
                    Some(report) => Some(report),
                    // Never started: held back by a failure.
                    None => failed.as_ref().map(|stack| ApplyReport {
                        stack: work[i].0.name().to_owned(),
                        not_started: work[i]
                            .1
                            .changes
                            .iter()
                            .filter(|c| c.action != Action::NoOp)
                            .map(|c| (c.address.clone(), c.action))
                            .collect(),
                        held_back: Some(format!("stack {stack:?} failed first")),
                        ..ApplyReport::default()
                    }),
                })
                .collect::<Vec<_>>(),
        )
    }
    .await;
    for i in locked {
        let _ = work[i].2.unlock().await;
    }
    result
}

/// Plans `saved`'s stacks again with the request it records and returns the new plan when its changes and
/// outputs equal the saved ones; otherwise refuses, naming the first difference.
async fn plan_again(
    project: &Project,
    ws: &Workspace,
    saved: &ProjectPlan,
    observer: &dyn Observer,
) -> Result<ProjectPlan> {
    let refuse = |why: String| {
        Error::new(
            ErrorKind::StalePlan,
            format!(
                "the plan file does not match planning now: {why}. The file was edited, or the configuration, the \
                 state or the cloud changed since it was made; plan again (nothing was changed)"
            ),
        )
    };
    if saved.format_version != crate::plan::FORMAT_VERSION {
        return Err(refuse(format!("format {} is not {}", saved.format_version, crate::plan::FORMAT_VERSION)));
    }
    let Some(first) = saved.stacks.first() else {
        return Ok(ProjectPlan::made_here(Vec::new()));
    };
    if let Some(missing) = saved.stacks.iter().find(|p| project.get(&p.stack).is_none()) {
        return Err(Error::new(
            ErrorKind::StalePlan,
            format!("the plan is for stack {:?}, which the project does not have", missing.stack),
        ));
    }
    if let Some(other) = saved
        .stacks
        .iter()
        .find(|p| (p.destroy, &p.targets, p.refreshed) != (first.destroy, &first.targets, first.refreshed))
    {
        return Err(refuse(format!(
            "stacks {:?} and {:?} disagree on the destroy flag, the targets or the refresh",
            first.stack, other.stack
        )));
    }
    let request = PlanRequest {
        stacks: saved.stacks.iter().map(|p| p.stack.clone()).collect(),
        targets: first.targets.clone(),
        no_refresh: !first.refreshed,
        destroy: first.destroy,
        deny_warnings: false,
    };
    let now = plan(project, ws, &request, observer).await?;
    let names = |p: &ProjectPlan| p.stacks.iter().map(|s| s.stack.clone()).collect::<Vec<_>>();
    if names(saved) != names(&now) {
        return Err(refuse(format!("the file plans stacks {:?}, planning now gives {:?}", names(saved), names(&now))));
    }
    for (saved, now) in saved.stacks.iter().zip(&now.stacks) {
        // Compared in the file's form: JSON maps a `null` value and an absent one alike.
        let now: Plan = serde_json::to_value(now)
            .and_then(serde_json::from_value)
            .map_err(|e| Error::new(ErrorKind::StalePlan, format!("a plan does not round-trip through JSON: {e}")))?;
        if let Some(why) = plan_difference(saved, &now) {
            return Err(refuse(format!("stack {:?}: {why}", saved.stack)));
        }
    }
    Ok(now)
}

/// The first difference between a saved stack plan and the same stack planned now, in words; `None` when
/// everything that apply acts on is equal (notes, drift and warnings are information only).
fn plan_difference(saved: &Plan, now: &Plan) -> Option<String> {
    let version = |p: &Plan| {
        p.state.as_ref().map_or("no state".to_owned(), |s| format!("lineage {} serial {}", s.lineage, s.serial))
    };
    if saved.state != now.state {
        return Some(format!("the file was made against {}, the state is at {}", version(saved), version(now)));
    }
    if saved.config_digest != now.config_digest {
        return Some("the configuration digest differs".into());
    }
    let action =
        |a: Action| serde_json::to_value(a).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
    fn by_address(p: &Plan) -> BTreeMap<&Address, &crate::plan::Change> {
        p.changes.iter().map(|c| (&c.address, c)).collect()
    }
    let (saved_changes, now_changes) = (by_address(saved), by_address(now));
    let addresses: std::collections::BTreeSet<&Address> =
        saved_changes.keys().chain(now_changes.keys()).copied().collect();
    for address in addresses {
        match (saved_changes.get(address), now_changes.get(address)) {
            (Some(s), None) => {
                return Some(format!(
                    "{address}: the file plans {}, planning now does not involve it",
                    action(s.action)
                ));
            }
            (None, Some(n)) => {
                return Some(format!("{address}: planning now gives {}, the file does not have it", action(n.action)));
            }
            (Some(s), Some(n)) if s.action != n.action => {
                return Some(format!(
                    "{address}: the file says {}, planning now gives {}",
                    action(s.action),
                    action(n.action)
                ));
            }
            (Some(s), Some(n)) if s != n => {
                let part = if s.diffs != n.diffs {
                    let field = s.diffs.iter().zip(&n.diffs).find(|(a, b)| a != b).map(|(a, _)| a.field.clone());
                    field.map_or("its list of changed fields".to_owned(), |f| format!("the change of `{f}`"))
                } else if s.after != n.after {
                    "its values after apply".to_owned()
                } else if s.before != n.before {
                    "its values before apply".to_owned()
                } else if s.reasons != n.reasons {
                    "its reasons".to_owned()
                } else {
                    "its ordering (dependencies or create-before-destroy)".to_owned()
                };
                return Some(format!("{address}: {part} differs"));
            }
            _ => {}
        }
    }
    if saved.outputs != now.outputs {
        let name = saved
            .outputs
            .iter()
            .zip(&now.outputs)
            .find(|(a, b)| a != b)
            .map_or_else(|| "the list of outputs".to_owned(), |(a, _)| format!("output `{}`", a.name));
        return Some(format!("{name} differs"));
    }
    None
}

/// For each stack, the stacks (indexes into `stacks`) that must be applied before it: those whose outputs it
/// reads (`RemoteState`) and the one that creates the bucket its state lives in. A destroy runs the other way
/// round: a stack goes before the stacks it depended on.
fn stack_dependencies(stacks: &[&Stack], destroy: bool) -> Vec<std::collections::BTreeSet<usize>> {
    let index = |name: &str| stacks.iter().position(|s| s.name() == name);
    let mut deps: Vec<std::collections::BTreeSet<usize>> = stacks.iter().map(|_| Default::default()).collect();
    for (i, stack) in stacks.iter().enumerate() {
        for node in stack.nodes() {
            if node.schema.kind == crate::stack::REMOTE_STATE.kind
                && let Some(j) = node.inputs.get("stack").and_then(Attr::as_str).and_then(index)
                && j != i
            {
                deps[i].insert(j);
            }
        }
        if let Backend::S3 { bucket, .. } = stack.state_backend() {
            for (j, other) in stacks.iter().enumerate() {
                let makes_it = other.nodes().iter().any(|n| {
                    n.address.kind() == "aws_s3_bucket" && n.inputs.get("bucket").and_then(Attr::as_str) == Some(bucket)
                });
                if j != i && makes_it {
                    deps[i].insert(j);
                }
            }
        }
    }
    if destroy {
        let mut reversed: Vec<std::collections::BTreeSet<usize>> = stacks.iter().map(|_| Default::default()).collect();
        for (i, ds) in deps.iter().enumerate() {
            for &j in ds {
                reversed[j].insert(i);
            }
        }
        return reversed;
    }
    deps
}

/// The recorded outputs of `stack`, sensitive values redacted unless `reveal` is true.
pub async fn outputs(project: &Project, ws: &Workspace, stack: &str, reveal: bool) -> Result<BTreeMap<String, Attr>> {
    let stack = selected(project, &[stack.to_owned()], false)?[0];
    let state = ws.store(stack)?.load().await?.unwrap_or_else(|| State::new(stack.name()));
    Ok(state
        .outputs
        .into_iter()
        .map(|(k, o)| (k, if o.sensitive && !reveal { Attr::Sensitive } else { o.value }))
        .collect())
}

/// Reads the cloud and records what it found (drift included) in the state, without changing the cloud.
pub async fn refresh(project: &Project, ws: &Workspace, stack: &str, observer: &dyn Observer) -> Result<State> {
    let stack = selected(project, &[stack.to_owned()], false)?[0];
    let store = ws.store(stack)?;
    store.lock("refresh").await?;
    let result = async {
        let prior = store.load().await?.unwrap_or_else(|| State::new(stack.name()));
        let mut refreshed = refresh_state(stack, &prior, &ws.providers, &BTreeMap::new(), true, observer).await?;
        refreshed.resources.retain(|a, _| a.mode() == Mode::Managed);
        if refreshed != prior {
            refreshed.serial += 1;
            store.save(&refreshed).await?;
        }
        Ok(refreshed)
    }
    .await;
    let _ = store.unlock().await;
    result
}

/// The recorded state of `stack`.
pub async fn state(project: &Project, ws: &Workspace, stack: &str) -> Result<State> {
    let stack = selected(project, &[stack.to_owned()], false)?[0];
    Ok(ws.store(stack)?.load().await?.unwrap_or_else(|| State::new(stack.name())))
}

/// Releases a stale lock of `stack` whose id is `id`.
pub async fn unlock(project: &Project, ws: &Workspace, stack: &str, id: &str) -> Result<()> {
    let stack = selected(project, &[stack.to_owned()], false)?[0];
    ws.store(stack)?.force_unlock(id).await
}

/// Reads another stack's recorded outputs for [`RemoteState`](crate::stack::RemoteState).
#[derive(Debug)]
struct RemoteStateReader {
    state_dir: PathBuf,
    aws: Option<Arc<AwsContext>>,
    local_state_only: bool,
    encryption: Option<Arc<StateEncryption>>,
}

#[async_trait]
impl Provider for RemoteStateReader {
    async fn read(&self, _kind: &str, requests: &[ReadRequest<'_>]) -> Result<Vec<Option<Observed>>> {
        let mut out = Vec::new();
        for r in requests {
            let stack = r.inputs.get("stack").and_then(Attr::as_str).unwrap_or_default().to_owned();
            let backend: Backend = r
                .inputs
                .get("backend")
                .map(Attr::to_json)
                .and_then(|j| serde_json::from_value(j).ok())
                .unwrap_or_default();
            let backend = if self.local_state_only { Backend::Local } else { backend };
            let inner = store_for(&self.state_dir, self.aws.as_ref(), &stack, &backend)?;
            let sensitive: Sensitivity = Arc::new(|_: &Address, name: &str| crate::plan::looks_secret(name));
            let store =
                EncryptingStore::new(inner, self.encryption.clone(), sensitive, self.state_dir.join("seen"), &stack);
            let state = store.load().await?;
            let outputs = state.map(|s| s.outputs.into_iter().map(|(k, o)| (k, o.value)).collect()).unwrap_or_default();
            out.push(Some(Observed { inputs: r.inputs.clone(), outputs }));
        }
        Ok(out)
    }

    async fn create(&self, ctx: &StepContext, _: &Attrs) -> Result<Observed> {
        Err(Error::provider(&ctx.address, "remote state is read-only"))
    }

    async fn update(&self, ctx: &StepContext, _: &ResourceState, _: &Attrs) -> Result<Observed> {
        Err(Error::provider(&ctx.address, "remote state is read-only"))
    }

    async fn delete(&self, _: &StepContext, _: &ResourceState) -> Result<()> {
        Ok(())
    }
}
