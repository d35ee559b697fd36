//! The executor: runs exactly what a [`Plan`] shows, in dependency order, with bounded parallelism.
//!
//! The apply graph is built from the plan's changes, never from the program: creates and updates wait for
//! what they depend on, deletes wait for the deletes of what depended on them, a replace is a delete then a
//! create (or the reverse with `create_before_destroy`). Independent steps run concurrently up to
//! [`ApplyOptions::parallelism`].
//!
//! One task, the loop in [`apply`], owns the state. Before each mutating call it records the intent in the
//! state's journal and persists it; when the call returns it records the outcome and persists again. Steps
//! only call providers and hand results back. After the first failure no new step starts; steps in flight
//! finish and are recorded, so the state always matches what was done.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::address::{Address, Mode};
use crate::attr::{Attr, Attrs, Reference};
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Observer, Silent};
use crate::plan::{Action, Plan, planner};
use crate::provider::{Observed, Providers, ReadRequest, StepContext, idempotency_token};
use crate::stack::{Node, Stack};
use crate::state::{Operation, OutputState, PendingOperation, ResourceState, State, StateStore, unix_now};

/// The schema providers get for a resource no longer declared (being deleted): deletes need only its state.
static ORPHAN: crate::schema::Schema = crate::schema::Schema {
    kind: "orphan",
    mode: Mode::Managed,
    fields: &[],
    outputs: &[],
    id: None,
    predict: crate::schema::predict_nothing,
    open_outputs: true,
};

/// Terraform's default, and a safe one for AWS APIs' per-account rate limits.
pub const DEFAULT_PARALLELISM: usize = 10;

/// Cancels a run: no new step starts after [`Cancel::cancel`]; steps in flight finish and are recorded.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Cancel::default()
    }

    /// Requests cancellation.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether cancellation was requested.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Options of [`apply`].
#[derive(Clone)]
pub struct ApplyOptions {
    /// How many steps may run at once (at least 1).
    pub parallelism: usize,
    /// Receives the run's events.
    pub observer: Arc<dyn Observer>,
    /// Stops scheduling when cancelled.
    pub cancel: Cancel,
    /// A budget shared with other stacks applied at the same time: a step runs only while it holds one of its
    /// permits. [`crate::ops::apply`] sets one of `parallelism` permits for all the stacks it runs together.
    pub budget: Option<Arc<tokio::sync::Semaphore>>,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        ApplyOptions {
            parallelism: DEFAULT_PARALLELISM,
            observer: Arc::new(Silent),
            cancel: Cancel::new(),
            budget: None,
        }
    }
}

impl std::fmt::Debug for ApplyOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApplyOptions").field("parallelism", &self.parallelism).finish_non_exhaustive()
    }
}

/// What an apply did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ApplyReport {
    /// The stack.
    pub stack: String,
    /// Steps that completed, in completion order.
    pub done: Vec<(Address, Action)>,
    /// Updates found unnecessary once their inputs were known.
    pub skipped: Vec<Address>,
    /// Steps that failed, with their error message.
    pub failed: Vec<(Address, Action, String)>,
    /// Planned steps never started (after a failure or cancellation).
    pub not_started: Vec<(Address, Action)>,
    /// Why the whole stack was not started (another stack of the run failed first), if it was not.
    pub held_back: Option<String>,
    /// The stack outputs after the apply (sensitive ones redacted).
    pub outputs: BTreeMap<String, Attr>,
    /// The largest number of steps that ran at once.
    pub max_in_flight: usize,
    /// Wall time.
    pub elapsed: Duration,
}

impl ApplyReport {
    /// True when every planned step completed.
    pub fn is_success(&self) -> bool {
        self.failed.is_empty() && self.not_started.is_empty() && self.held_back.is_none()
    }

    /// `Ok(self)` on success, else an error summarising the failures.
    pub fn into_result(self) -> Result<ApplyReport> {
        if self.is_success() {
            return Ok(self);
        }
        if let Some(why) = &self.held_back {
            return Err(Error::new(
                ErrorKind::Cancelled,
                format!("stack {:?} not started ({} step(s)): {why}", self.stack, self.not_started.len()),
            ));
        }
        let mut message = format!(
            "apply of stack {:?} stopped: {} step(s) failed, {} not started, {} done (state saved)",
            self.stack,
            self.failed.len(),
            self.not_started.len(),
            self.done.len()
        );
        for (address, action, error) in &self.failed {
            message.push_str(&format!("\n  - {address} ({action:?}): {error}"));
        }
        let kind = if self.failed.is_empty() { ErrorKind::Cancelled } else { ErrorKind::Provider };
        Err(Error::new(kind, message))
    }
}

/// One unit of work: a resource and what to do to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Step {
    Read,
    Create,
    Update,
    Delete,
}

type StepId = (Address, Step);

impl Step {
    fn action(self) -> Action {
        match self {
            Step::Read => Action::Read,
            Step::Create => Action::Create,
            Step::Update => Action::Update,
            Step::Delete => Action::Delete,
        }
    }
}

struct StepResult {
    id: StepId,
    started: Instant,
    outcome: Result<Option<Observed>>,
}

/// Applies `plan` (made for `stack`) to `state`, persisting to `store` after every step. The caller holds
/// the stack's lock.
///
/// Refuses before the first mutation, with [`ErrorKind::StalePlan`], when the state moved on since the plan
/// was made (lineage or serial differ) or the configuration changed (its digest differs).
pub async fn apply(
    plan: &Plan,
    stack: &Stack,
    providers: &Providers,
    store: &dyn StateStore,
    state: State,
    options: &ApplyOptions,
) -> Result<ApplyReport> {
    check_fresh(plan, stack, &state)?;
    // Every kind the plan touches must have a provider before the first mutation, not halfway through.
    for change in plan.changes.iter().filter(|c| c.action != Action::NoOp || c.address.mode() == Mode::Data) {
        providers
            .get(change.address.kind())
            .map_err(|e| Error::new(e.kind(), format!("{e} (needed for {}); nothing was changed", change.address)))?;
    }
    let graph = StepGraph::build(plan, stack)?;
    let started = Instant::now();
    let mut run = Run {
        stack,
        providers,
        store,
        state,
        planned: plan.changes.iter().map(|c| (c.address.clone(), c.clone())).collect(),
        observer: options.observer.clone(),
        report: ApplyReport { stack: stack.name().to_owned(), ..ApplyReport::default() },
    };

    // Operations an interrupted run left pending are superseded by this plan, which was made knowing them:
    // creates run again with the same idempotency tokens (the cloud returns what the first attempt made, or the
    // providers adopt it by its paranix tags), deletes and updates are idempotent.
    if !run.state.pending.is_empty() {
        let operations = run.state.pending.iter().map(|p| format!("{:?} {}", p.operation, p.address)).collect();
        run.emit(Event::Recovered { stack: stack.name().to_owned(), operations });
        // An interrupted create is retried as the same attempt: same generation, so the same token.
        let interrupted: Vec<Address> = run
            .state
            .pending
            .iter()
            .filter(|p| p.operation == Operation::Create && !run.state.resources.contains_key(&p.address))
            .map(|p| p.address.clone())
            .collect();
        for address in interrupted {
            if let Some(generation) = run.state.generations.get_mut(&address) {
                *generation = generation.saturating_sub(1);
            }
        }
        run.state.pending.clear();
        run.persist().await?;
    }

    let mut waiting: BTreeMap<StepId, usize> = graph.deps.iter().map(|(id, ds)| (id.clone(), ds.len())).collect();
    let mut ready: BTreeSet<StepId> = waiting.iter().filter(|(_, n)| **n == 0).map(|(id, _)| id.clone()).collect();
    let mut tasks: JoinSet<StepResult> = JoinSet::new();
    let mut stopped = false;
    let parallelism = options.parallelism.max(1);
    let mut started_steps: BTreeSet<StepId> = BTreeSet::new();

    loop {
        while !stopped && tasks.len() < parallelism {
            if options.cancel.is_cancelled() {
                stopped = true;
                break;
            }
            let Some(id) = ready.pop_first() else { break };
            started_steps.insert(id.clone());
            match run.start(&id, &graph).await {
                Ok(Some(task)) => {
                    let budget = options.budget.clone();
                    tasks.spawn(async move {
                        // Shared with the other stacks of this run: wait for a permit, hold it while running.
                        let _permit = match &budget {
                            Some(budget) => budget.clone().acquire_owned().await.ok(),
                            None => None,
                        };
                        task.await
                    });
                    run.report.max_in_flight = run.report.max_in_flight.max(tasks.len());
                }
                Ok(None) => finish(&id, &graph, &mut waiting, &mut ready),
                Err(e) => {
                    run.fail(&id, e.to_string());
                    stopped = true;
                }
            }
        }
        let Some(joined) = tasks.join_next().await else { break };
        let result =
            joined.map_err(|e| Error::new(ErrorKind::Provider, format!("a step panicked or was aborted: {e}")))?;
        let id = result.id.clone();
        if run.finish(result).await? {
            finish(&id, &graph, &mut waiting, &mut ready);
        } else {
            stopped = true;
        }
    }

    for (address, step) in waiting.into_keys() {
        if !started_steps.contains(&(address.clone(), step)) {
            run.report.not_started.push((address, step.action()));
        }
    }
    if run.report.is_success() && plan.targets.is_empty() {
        run.record_outputs(plan.destroy).await?;
    }
    run.report.outputs = run.redacted_outputs();
    run.report.elapsed = started.elapsed();
    Ok(run.report)
}

fn finish(id: &StepId, graph: &StepGraph, waiting: &mut BTreeMap<StepId, usize>, ready: &mut BTreeSet<StepId>) {
    waiting.remove(id);
    for dependent in graph.dependents.get(id).into_iter().flatten() {
        if let Some(n) = waiting.get_mut(dependent) {
            *n -= 1;
            if *n == 0 {
                ready.insert(dependent.clone());
            }
        }
    }
}

pub(crate) fn check_fresh(plan: &Plan, stack: &Stack, state: &State) -> Result<()> {
    let stale = |why: String| {
        Error::new(
            ErrorKind::StalePlan,
            format!("the saved plan for stack {:?} is stale: {why}; plan again", stack.name()),
        )
    };
    if plan.stack != stack.name() {
        return Err(Error::new(
            ErrorKind::StalePlan,
            format!("the plan is for stack {:?}, not {:?}", plan.stack, stack.name()),
        ));
    }
    let current = (state.serial > 0 || !state.is_empty()).then_some((state.lineage.as_str(), state.serial));
    let planned = plan.state.as_ref().map(|s| (s.lineage.as_str(), s.serial));
    if current != planned {
        let show = |v: Option<(&str, u64)>| v.map_or("no state".to_owned(), |(l, s)| format!("lineage {l} serial {s}"));
        return Err(stale(format!("it was made against {}, the state is now at {}", show(planned), show(current))));
    }
    if plan.config_digest != planner::config_digest(stack) {
        return Err(stale("the configuration changed since it was made".into()));
    }
    Ok(())
}

/// The steps of a plan and their ordering.
struct StepGraph {
    deps: BTreeMap<StepId, BTreeSet<StepId>>,
    dependents: BTreeMap<StepId, Vec<StepId>>,
    cbd: BTreeSet<Address>,
}

impl StepGraph {
    fn build(plan: &Plan, stack: &Stack) -> Result<StepGraph> {
        let mut deps: BTreeMap<StepId, BTreeSet<StepId>> = BTreeMap::new();
        let mut cbd = BTreeSet::new();
        for change in &plan.changes {
            let a = change.address.clone();
            match change.action {
                Action::Create => {
                    deps.entry((a, Step::Create)).or_default();
                }
                Action::Update => {
                    deps.entry((a, Step::Update)).or_default();
                }
                Action::Delete => {
                    deps.entry((a, Step::Delete)).or_default();
                }
                Action::Read => {
                    deps.entry((a, Step::Read)).or_default();
                }
                // Data sources are read on every apply so their values are in state for resolution.
                Action::NoOp if a.mode() == Mode::Data => {
                    deps.entry((a, Step::Read)).or_default();
                }
                Action::NoOp => {}
                Action::Replace if change.create_before_destroy => {
                    cbd.insert(a.clone());
                    deps.entry((a.clone(), Step::Create)).or_default();
                    deps.entry((a.clone(), Step::Delete)).or_default().insert((a, Step::Create));
                }
                Action::Replace => {
                    deps.entry((a.clone(), Step::Delete)).or_default();
                    deps.entry((a.clone(), Step::Create)).or_default().insert((a, Step::Delete));
                }
            }
        }
        let steps: Vec<StepId> = deps.keys().cloned().collect();
        let forward = |address: &Address| -> Option<StepId> {
            [Step::Create, Step::Update, Step::Read]
                .into_iter()
                .map(|s| (address.clone(), s))
                .find(|id| deps.contains_key(id))
        };
        let mut edges: Vec<(StepId, StepId)> = Vec::new();
        for change in &plan.changes {
            // Creates, updates and reads wait for what the resource depends on.
            let node_deps = stack.node(&change.address).map_or(&change.depends_on, |n: &Node| &n.depends_on);
            if let Some(me) = forward(&change.address) {
                for d in node_deps {
                    if let Some(them) = forward(d) {
                        edges.push((me.clone(), them));
                    }
                }
            }
            // A delete waits for the deletes of everything that depended on the object.
            let my_delete = (change.address.clone(), Step::Delete);
            if deps.contains_key(&my_delete) {
                for other in &plan.changes {
                    let their_delete = (other.address.clone(), Step::Delete);
                    if other.prior_dependencies.contains(&change.address) && deps.contains_key(&their_delete) {
                        edges.push((my_delete.clone(), their_delete));
                    }
                }
                // With create-before-destroy, the old object goes only once its dependents use the new one.
                if cbd.contains(&change.address) {
                    for other in &plan.changes {
                        if other.depends_on.contains(&change.address)
                            && let Some(them) = forward(&other.address)
                        {
                            edges.push((my_delete.clone(), them));
                        }
                    }
                }
            }
        }
        for (from, to) in edges {
            if from != to {
                deps.get_mut(&from).expect("edge source is a step").insert(to);
            }
        }
        let as_lists: BTreeMap<StepLabel, Vec<StepLabel>> =
            steps.iter().map(|id| (StepLabel(id.clone()), deps[id].iter().cloned().map(StepLabel).collect())).collect();
        crate::graph::topological_order(&as_lists)?;
        let mut dependents: BTreeMap<StepId, Vec<StepId>> = BTreeMap::new();
        for (id, ds) in &deps {
            for d in ds {
                dependents.entry(d.clone()).or_default().push(id.clone());
            }
        }
        Ok(StepGraph { deps, dependents, cbd })
    }
}

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord)]
struct StepLabel(StepId);

impl std::fmt::Display for StepLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({:?})", self.0.0, self.0.1)
    }
}

/// The state-owning side of an apply.
struct Run<'a> {
    stack: &'a Stack,
    providers: &'a Providers,
    store: &'a dyn StateStore,
    state: State,
    planned: BTreeMap<Address, crate::plan::Change>,
    observer: Arc<dyn Observer>,
    report: ApplyReport,
}

impl Run<'_> {
    fn emit(&self, event: Event) {
        self.observer.on_event(&event);
    }

    async fn persist(&mut self) -> Result<()> {
        self.state.serial += 1;
        self.store.save(&self.state).await?;
        self.emit(Event::StatePersisted { stack: self.stack.name().to_owned(), serial: self.state.serial });
        Ok(())
    }

    fn lookup(&self) -> impl FnMut(&Reference) -> Option<Attr> + '_ {
        |r| self.state.resources.get(&r.address).and_then(|s| s.attribute(&r.attribute)).cloned()
    }

    fn fail(&mut self, id: &StepId, message: String) {
        self.emit(Event::StepFailed {
            stack: self.stack.name().to_owned(),
            address: id.0.clone(),
            action: id.1.action(),
            message: message.clone(),
        });
        self.report.failed.push((id.0.clone(), id.1.action(), message));
    }

    /// Prepares a step: resolves its inputs, re-checks it against the state, journals the intent and
    /// returns the provider call to run, or `None` when nothing needs doing.
    async fn start(
        &mut self,
        id: &StepId,
        graph: &StepGraph,
    ) -> Result<Option<impl Future<Output = StepResult> + Send + 'static + use<>>> {
        let (address, step) = (id.0.clone(), id.1);
        let stack_name = self.stack.name().to_owned();
        let node = self.stack.node(&address);
        let schema = match node {
            Some(n) => n.schema,
            None => &ORPHAN,
        };
        let provider = self.providers.get(address.kind())?.clone();
        let inputs: Option<Attrs> = match (step, node) {
            (Step::Create | Step::Update | Step::Read, Some(node)) => {
                let resolved = planner::resolve_inputs(node, &mut self.lookup());
                // References must all be resolved by now; values only the provider can compute (`Unknown`)
                // are its to fill in.
                if let Some((field, _)) = resolved.iter().find(|(_, v)| v.has_refs()) {
                    return Err(Error::new(
                        ErrorKind::Provider,
                        format!("{address}: input `{field}` is still unknown at apply time"),
                    ));
                }
                Some(resolved)
            }
            (Step::Delete, _) => None,
            (_, None) => return Err(Error::new(ErrorKind::StalePlan, format!("{address} is no longer declared"))),
        };

        // Apply never does more than the plan showed: an update whose inputs now match is skipped, one that
        // would now need a replacement is refused.
        let mut inputs = inputs;
        let mut changed = Vec::new();
        let mut observed = None;
        if step == Step::Update {
            let node = node.expect("updates are of declared resources");
            let current = self.state.resources.get(&address).ok_or_else(|| {
                Error::new(ErrorKind::StalePlan, format!("{address} is planned for update but is not in state"))
            })?;
            let resolved = inputs.as_ref().expect("resolved");
            let comparison = planner::compare(node, resolved, current);
            if !comparison.forcing.is_empty() {
                return Err(Error::new(
                    ErrorKind::StalePlan,
                    format!(
                        "{address}: the plan said update, but {:?} now force a replacement; plan again",
                        comparison.forcing
                    ),
                ));
            }
            // The fields to change: what the plan showed against the refreshed state (drift included) and
            // still differs now that every value is known, plus anything that differs from the record.
            let planned = self.planned.get(&address);
            changed = comparison.changed.clone();
            for diff in planned.map(|c| c.diffs.as_slice()).unwrap_or_default() {
                let now = comparison.inputs.get(&diff.field);
                let still = diff.sensitive
                    || match (&diff.before, now) {
                        (Some(before), Some(now)) => {
                            node.schema.canonical(&diff.field, before) != node.schema.canonical(&diff.field, now)
                        }
                        (None, Some(Attr::Null)) | (None, None) => false,
                        _ => true,
                    };
                if still && !changed.contains(&diff.field) {
                    changed.push(diff.field.clone());
                }
            }
            if changed.is_empty() {
                self.emit(Event::StepSkipped { stack: stack_name, address: address.clone() });
                self.report.skipped.push(address);
                return Ok(None);
            }
            observed = planned.and_then(|c| c.before.clone());
            inputs = Some(comparison.inputs);
        }

        let prior: Option<ResourceState> = match step {
            Step::Delete if graph.cbd.contains(&address) => {
                Some(self.state.deposed.get(&address).cloned().ok_or_else(|| {
                    Error::new(ErrorKind::State, format!("{address}: the replaced object is missing from state"))
                })?)
            }
            Step::Delete | Step::Update => self.state.resources.get(&address).cloned(),
            _ => None,
        };
        if step == Step::Delete && prior.is_none() {
            return Ok(None);
        }

        let generation = match step {
            Step::Create => self.state.generations.get(&address).copied().unwrap_or(0) + 1,
            _ => self.state.generations.get(&address).copied().unwrap_or(1),
        };
        if step != Step::Read {
            let operation = match step {
                Step::Create => Operation::Create,
                Step::Update => Operation::Update,
                _ => Operation::Delete,
            };
            let token = (step == Step::Create)
                .then(|| idempotency_token(&stack_name, &self.state.lineage, &address, generation));
            if step == Step::Create {
                self.state.generations.insert(address.clone(), generation);
                // Create-before-destroy: keep the old object, deposed, until its delete step.
                if graph.cbd.contains(&address)
                    && let Some(old) = self.state.resources.remove(&address)
                {
                    self.state.deposed.insert(address.clone(), old);
                }
            }
            self.state.pending.push(PendingOperation {
                address: address.clone(),
                operation,
                token,
                started_at: unix_now(),
            });
            self.persist().await?;
        }
        self.emit(Event::StepStarted { stack: stack_name.clone(), address: address.clone(), action: step.action() });

        let mut ctx = StepContext::new(&stack_name, address.clone(), schema, generation, self.observer.clone());
        ctx.lineage = self.state.lineage.clone();
        ctx.changed = changed;
        ctx.observed = observed;
        let id = id.clone();
        Ok(Some(async move {
            let started = Instant::now();
            let outcome = match step {
                Step::Create => provider.create(&ctx, inputs.as_ref().expect("resolved")).await.map(Some),
                Step::Update => {
                    let prior = prior.as_ref().expect("updates have state");
                    provider.update(&ctx, prior, inputs.as_ref().expect("resolved")).await.map(Some)
                }
                Step::Delete => provider.delete(&ctx, prior.as_ref().expect("deletes have state")).await.map(|()| None),
                Step::Read => {
                    let inputs = inputs.unwrap_or_default();
                    let empty = Attrs::new();
                    let request = ReadRequest {
                        address: &ctx.address,
                        schema: ctx.schema,
                        inputs: &inputs,
                        outputs: &empty,
                        configured: None,
                    };
                    provider.read(ctx.address.kind(), &[request]).await.and_then(|mut found| {
                        match found.pop().flatten() {
                            Some(observed) => Ok(Some(Observed { inputs, outputs: observed.outputs })),
                            None => Err(Error::provider(&ctx.address, "the data source found nothing to read")),
                        }
                    })
                }
            };
            StepResult { id, started, outcome }
        }))
    }

    /// Records a finished step; returns whether it succeeded.
    async fn finish(&mut self, result: StepResult) -> Result<bool> {
        let StepResult { id: (address, step), started, outcome } = result;
        let operation_done = |p: &PendingOperation| p.address == address && step != Step::Read;
        self.state.pending.retain(|p| !operation_done(p));
        let mut finished = None;
        let ok = match outcome {
            Ok(observed) => {
                let mut id_output = None;
                match step {
                    Step::Delete => {
                        if self.state.deposed.remove(&address).is_none() {
                            self.state.resources.remove(&address);
                        }
                    }
                    _ => {
                        let observed = observed.unwrap_or_default();
                        id_output = observed.outputs.get("id").and_then(Attr::as_str).map(str::to_owned);
                        let dependencies = self.stack.node(&address).map(|n| n.depends_on.clone()).unwrap_or_default();
                        let generation = self.state.generations.get(&address).copied().unwrap_or(0);
                        self.state.resources.insert(
                            address.clone(),
                            ResourceState {
                                inputs: observed.inputs,
                                outputs: observed.outputs,
                                dependencies,
                                generation,
                            },
                        );
                    }
                }
                finished = Some(Event::StepFinished {
                    stack: self.stack.name().to_owned(),
                    address: address.clone(),
                    action: step.action(),
                    elapsed: started.elapsed(),
                    id: id_output,
                });
                self.report.done.push((address, step.action()));
                true
            }
            Err(e) => {
                self.fail(&(address, step), e.to_string());
                false
            }
        };
        if step != Step::Read || ok {
            self.persist().await?;
        }
        // "Complete" is said once the outcome is recorded.
        if let Some(event) = finished {
            self.emit(event);
        }
        Ok(ok)
    }

    /// Records the stack outputs (none after a destroy; only values that are known).
    async fn record_outputs(&mut self, destroy: bool) -> Result<()> {
        let recorded = self.state.resources.len();
        if destroy {
            // Data sources were read for the resources that are now gone.
            self.state.resources.retain(|address, _| address.mode() == Mode::Managed);
        }
        let data_removed = recorded != self.state.resources.len();
        let mut outputs = BTreeMap::new();
        for output in self.stack.outputs().iter().filter(|_| !destroy) {
            let value = output.value.resolve(&mut self.lookup());
            if value.is_known() {
                outputs.insert(output.name.clone(), OutputState { value, sensitive: output.sensitive });
            }
        }
        if outputs != self.state.outputs || data_removed {
            self.state.outputs = outputs;
            self.persist().await?;
        }
        Ok(())
    }

    fn redacted_outputs(&self) -> BTreeMap<String, Attr> {
        self.state
            .outputs
            .iter()
            .map(|(k, o)| (k.clone(), if o.sensitive { Attr::Sensitive } else { o.value.clone() }))
            .collect()
    }
}
