//! The planner: `(stack, prior state, refreshed state) -> Plan`, pure.

use std::collections::{BTreeMap, BTreeSet};

use sha2::{Digest, Sha256};

use super::{Action, AttrDiff, Change, Drift, FORMAT_VERSION, OutputChange, Plan, Reason, StateVersion};
use crate::address::{Address, Mode};
use crate::attr::{Attr, Attrs, Reference};
use crate::error::{Error, ErrorKind, Result};
use crate::graph::Graph;
use crate::schema::Schema;
use crate::stack::{Node, Stack};
use crate::state::{ResourceState, State};

/// Options of [`plan`].
#[derive(Clone, Debug, Default)]
pub struct PlanOptions {
    /// Plan the deletion of everything in state (outputs too).
    pub destroy: bool,
    /// Restrict the plan to these addresses and what they depend on (deletes: only these addresses).
    pub targets: Vec<Address>,
    /// Whether `refreshed` came from reading the cloud (recorded in the plan; `false` for offline plans).
    pub refreshed: bool,
    /// Buckets that hold stack state, which the paranoid checks require to be versioned.
    pub state_buckets: Vec<String>,
}

/// Plans `stack` against `prior` (what paranix recorded) and `refreshed` (what the cloud has now; pass the
/// prior state again when planning offline). Data sources' values are taken from `refreshed`; any missing
/// or unknown there make the data source a read during apply.
///
/// Fails with [`ErrorKind::InvalidConfig`] or [`ErrorKind::Cycle`] for a bad declaration and with
/// [`ErrorKind::Protected`] when a protected resource would be deleted or replaced.
pub fn plan(stack: &Stack, prior: &State, refreshed: &State, options: &PlanOptions) -> Result<Plan> {
    stack.check()?;
    let graph = Graph::of(stack)?;
    let mut planner =
        Planner { after: BTreeMap::new(), changes: Vec::new(), protected: Vec::new(), warnings: Vec::new() };

    let in_scope: Option<BTreeSet<Address>> =
        (!options.targets.is_empty()).then(|| graph.with_dependencies(&options.targets));
    for target in &options.targets {
        if stack.node(target).is_none() && !refreshed.resources.contains_key(target) {
            return Err(Error::new(
                ErrorKind::Usage,
                format!("--target {target}: no such resource in stack {:?}", stack.name()),
            ));
        }
    }

    if !options.destroy {
        for address in graph.order() {
            let node = stack.node(address).expect("graph nodes are declared");
            let gone = prior.resources.contains_key(address) && !refreshed.resources.contains_key(address);
            let change = planner.plan_node(node, refreshed.resources.get(address), gone, &options.state_buckets);
            if in_scope.as_ref().is_none_or(|scope| scope.contains(address)) {
                planner.changes.push(change);
            }
        }
    }
    for (address, state) in refreshed.managed() {
        let declared = if options.destroy { None } else { stack.node(address) };
        if declared.is_some() || in_scope.as_ref().is_some_and(|_| !options.targets.contains(address)) {
            continue;
        }
        let reason = if options.destroy { Reason::DestroyRequested } else { Reason::NotInConfiguration };
        if stack.node(address).is_some_and(|n| n.lifecycle.protect) {
            planner.protected.push(format!("{address} would be deleted ({reason})"));
        }
        let schema = stack.node(address).map(|n| n.schema);
        planner.changes.push(Change {
            address: address.clone(),
            action: Action::Delete,
            reasons: vec![reason],
            create_before_destroy: false,
            before: Some(redact(schema, &merged(state))),
            after: None,
            diffs: Vec::new(),
            depends_on: Vec::new(),
            prior_dependencies: state.dependencies.clone(),
        });
    }
    if !planner.protected.is_empty() {
        return Err(Error::new(
            ErrorKind::Protected,
            format!(
                "the plan would destroy protected resources:\n  - {}\nRemove `protect` from them deliberately if that is what you want.",
                planner.protected.join("\n  - ")
            ),
        ));
    }
    planner.changes.sort_by(|a, b| a.address.cmp(&b.address));

    let outputs =
        if options.targets.is_empty() { planner.plan_outputs(stack, prior, options.destroy) } else { Vec::new() };
    Ok(Plan {
        format_version: FORMAT_VERSION,
        stack: stack.name().to_owned(),
        destroy: options.destroy,
        state: (prior.serial > 0 || !prior.is_empty())
            .then(|| StateVersion { lineage: prior.lineage.clone(), serial: prior.serial }),
        config_digest: config_digest(stack),
        refreshed: options.refreshed,
        targets: options.targets.clone(),
        changes: planner.changes,
        outputs,
        drift: drift(stack, prior, refreshed),
        notes: Vec::new(),
        warnings: planner.warnings,
    })
}

struct Planner {
    /// Every planned resource's attributes after apply (inputs and outputs; unknowns as `Attr::Unknown`).
    after: BTreeMap<Address, Attrs>,
    changes: Vec<Change>,
    protected: Vec<String>,
    warnings: Vec<super::Warning>,
}

impl Planner {
    fn lookup(&self) -> impl FnMut(&Reference) -> Option<Attr> + '_ {
        |r| self.after.get(&r.address).and_then(|attrs| attrs.get(&r.attribute)).cloned()
    }

    fn plan_node(
        &mut self,
        node: &Node,
        current: Option<&ResourceState>,
        gone: bool,
        state_buckets: &[String],
    ) -> Change {
        let inputs = resolve_inputs(node, &mut self.lookup());
        self.warnings.extend(super::checks::check(&node.address, &inputs, state_buckets));
        if node.address.mode() == Mode::Data {
            return self.plan_data(node, inputs, current);
        }
        let Some(current) = current else {
            let after = after_create(node.schema, &inputs);
            self.after.insert(node.address.clone(), after.clone());
            let diffs = node
                .schema
                .fields
                .iter()
                .filter_map(|f| inputs.get(f.name).map(|v| (f, v)))
                .map(|(f, v)| AttrDiff {
                    field: f.name.to_owned(),
                    before: None,
                    after: Some(redact_value(f.sensitive, v)),
                    forces_replacement: false,
                    sensitive: f.sensitive,
                })
                .collect();
            let reason = if gone { Reason::GoneOutOfBand } else { Reason::NotInState };
            return self.change(node, Action::Create, vec![reason], None, Some(after), diffs);
        };

        let comparison = compare(node, &inputs, current);
        let before = merged(current);
        let (action, reasons, after) = if !comparison.forcing.is_empty() {
            if node.lifecycle.protect {
                self.protected.push(format!(
                    "{} would be replaced ({})",
                    node.address,
                    Reason::ForcesReplacement { fields: comparison.forcing.clone() }
                ));
            }
            let after = after_create(node.schema, &comparison.inputs);
            (Action::Replace, vec![Reason::ForcesReplacement { fields: comparison.forcing.clone() }], after)
        } else {
            let mut after = current.outputs.clone();
            after.extend(comparison.inputs.clone());
            if comparison.changed.is_empty() {
                (Action::NoOp, Vec::new(), after)
            } else {
                // Outputs derived from the inputs change with them.
                let predicted = if comparison.inputs.values().all(Attr::is_known) {
                    (node.schema.predict)(&comparison.inputs)
                } else {
                    Attrs::new()
                };
                for output in node.schema.outputs.iter().filter(|o| o.derived) {
                    after.insert(output.name.to_owned(), predicted.get(output.name).cloned().unwrap_or(Attr::Unknown));
                }
                (Action::Update, vec![Reason::FieldsChanged { fields: comparison.changed.clone() }], after)
            }
        };
        self.after.insert(node.address.clone(), after.clone());
        let mut change = self.change(node, action, reasons, Some(before), Some(after), comparison.diffs);
        change.prior_dependencies = current.dependencies.clone();
        change
    }

    fn plan_data(&mut self, node: &Node, inputs: Attrs, current: Option<&ResourceState>) -> Change {
        let values = current.filter(|_| inputs.values().all(Attr::is_known)).map(|c| c.outputs.clone());
        let known = values.as_ref().is_some_and(|v| v.values().all(Attr::is_known));
        let mut after = inputs;
        after.extend(values.unwrap_or_default());
        self.after.insert(node.address.clone(), after.clone());
        if known {
            self.change(node, Action::NoOp, Vec::new(), None, Some(after), Vec::new())
        } else {
            self.change(node, Action::Read, vec![Reason::ReadDuringApply], None, Some(after), Vec::new())
        }
    }

    fn change(
        &self,
        node: &Node,
        action: Action,
        reasons: Vec<Reason>,
        before: Option<Attrs>,
        after: Option<Attrs>,
        diffs: Vec<AttrDiff>,
    ) -> Change {
        Change {
            address: node.address.clone(),
            action,
            reasons,
            create_before_destroy: action == Action::Replace && node.lifecycle.create_before_destroy,
            before: before.map(|b| redact(Some(node.schema), &b)),
            after: after.map(|a| redact(Some(node.schema), &a)),
            diffs,
            depends_on: node.depends_on.clone(),
            prior_dependencies: Vec::new(),
        }
    }

    fn plan_outputs(&self, stack: &Stack, prior: &State, destroy: bool) -> Vec<OutputChange> {
        let mut lookup = |r: &Reference| self.after.get(&r.address).and_then(|a| a.get(&r.attribute)).cloned();
        let mut changes = Vec::new();
        let mut declared = BTreeSet::new();
        if !destroy {
            for output in stack.outputs() {
                declared.insert(output.name.as_str());
                let after = output.value.resolve(&mut lookup);
                let before = prior.outputs.get(&output.name).map(|o| o.value.clone());
                let action = match &before {
                    None => Action::Create,
                    Some(b) if after.is_known() && *b == after => Action::NoOp,
                    Some(_) => Action::Update,
                };
                let hide = |v: Attr| if output.sensitive { Attr::Sensitive } else { v };
                changes.push(OutputChange {
                    name: output.name.clone(),
                    action,
                    before: before.map(hide),
                    after: Some(hide(after)),
                    sensitive: output.sensitive,
                });
            }
        }
        for (name, recorded) in &prior.outputs {
            if !declared.contains(name.as_str()) {
                changes.push(OutputChange {
                    name: name.clone(),
                    action: Action::Delete,
                    before: Some(if recorded.sensitive { Attr::Sensitive } else { recorded.value.clone() }),
                    after: None,
                    sensitive: recorded.sensitive,
                });
            }
        }
        changes.sort_by(|a, b| a.name.cmp(&b.name));
        changes
    }
}

/// A node's inputs with every reference `lookup` can answer resolved.
pub(crate) fn resolve_inputs(node: &Node, lookup: &mut dyn FnMut(&Reference) -> Option<Attr>) -> Attrs {
    node.inputs.iter().map(|(k, v)| (k.clone(), v.resolve(lookup))).collect()
}

/// The result of comparing desired inputs with a resource's current state.
pub(crate) struct Comparison {
    /// The inputs to apply: desired, except ignored fields, which keep their current value.
    pub(crate) inputs: Attrs,
    /// Fields that differ (or may differ: unknown until apply).
    pub(crate) changed: Vec<String>,
    /// The subset of `changed` that forces replacement.
    pub(crate) forcing: Vec<String>,
    /// One diff per changed field, values redacted where sensitive.
    pub(crate) diffs: Vec<AttrDiff>,
}

/// Compares `desired` (resolved) inputs of `node` with `current`, honouring `ignore_changes` and each
/// field's comparison rule. An unknown value counts as a change.
pub(crate) fn compare(node: &Node, desired: &Attrs, current: &ResourceState) -> Comparison {
    let schema = node.schema;
    let mut inputs = desired.clone();
    let (mut changed, mut forcing, mut diffs) = (Vec::new(), Vec::new(), Vec::new());
    for field in schema.fields {
        let name = field.name;
        if node.lifecycle.ignore_changes.iter().any(|f| f == name) {
            match current.inputs.get(name) {
                Some(v) => inputs.insert(name.to_owned(), v.clone()),
                None => inputs.remove(name),
            };
            continue;
        }
        let before = current.inputs.get(name);
        let after = inputs.get(name);
        let differs = match (before, after) {
            (None, None) => false,
            (Some(b), Some(a)) => !a.is_known() || schema.canonical(name, b) != schema.canonical(name, a),
            (None, Some(Attr::Null)) | (Some(Attr::Null), None) => false,
            _ => true,
        };
        if differs {
            changed.push(name.to_owned());
            if field.force_new {
                forcing.push(name.to_owned());
            }
            diffs.push(AttrDiff {
                field: name.to_owned(),
                before: before.map(|v| redact_value(field.sensitive, v)),
                after: after.map(|v| redact_value(field.sensitive, v)),
                forces_replacement: field.force_new,
                sensitive: field.sensitive,
            });
        }
    }
    Comparison { inputs, changed, forcing, diffs }
}

/// The attributes of a resource about to be created: its inputs, the outputs its kind can predict, and every
/// other output unknown.
fn after_create(schema: &Schema, inputs: &Attrs) -> Attrs {
    let mut after = inputs.clone();
    let predicted = if inputs.values().all(Attr::is_known) { (schema.predict)(inputs) } else { Attrs::new() };
    for output in schema.outputs {
        let value = predicted.get(output.name).cloned().unwrap_or(Attr::Unknown);
        after.insert(output.name.to_owned(), value);
    }
    after
}

/// Inputs and outputs in one map (outputs never shadow inputs).
fn merged(state: &ResourceState) -> Attrs {
    let mut all = state.outputs.clone();
    all.extend(state.inputs.clone());
    all
}

fn redact_value(sensitive: bool, value: &Attr) -> Attr {
    if sensitive && value.is_known() && *value != Attr::Null { Attr::Sensitive } else { value.clone() }
}

/// Replaces the values of sensitive attributes with [`Attr::Sensitive`].
pub(crate) fn redact(schema: Option<&Schema>, attrs: &Attrs) -> Attrs {
    attrs
        .iter()
        .map(|(k, v)| {
            // Without a schema (a resource no longer declared) nothing is known about sensitivity: redact
            // attributes whose names say they are secret.
            let sensitive = schema.map_or_else(|| looks_secret(k), |s| s.is_sensitive(k));
            (k.clone(), redact_value(sensitive, v))
        })
        .collect()
}

pub(crate) fn looks_secret(name: &str) -> bool {
    ["private", "secret", "password", "token"].iter().any(|w| name.contains(w))
}

/// Differences between what was recorded and what refresh observed.
fn drift(stack: &Stack, prior: &State, refreshed: &State) -> Vec<Drift> {
    let mut drifts = Vec::new();
    for (address, recorded) in prior.managed() {
        let schema = stack.node(address).map(|n| n.schema);
        match refreshed.resources.get(address) {
            None => drifts.push(Drift { address: address.clone(), deleted: true, diffs: Vec::new() }),
            Some(observed) => {
                let mut fields: BTreeSet<&String> = recorded.inputs.keys().collect();
                fields.extend(observed.inputs.keys());
                let diffs: Vec<AttrDiff> = fields
                    .into_iter()
                    .filter_map(|name| {
                        let (b, a) = (recorded.inputs.get(name), observed.inputs.get(name));
                        let same = match (b, a, schema) {
                            (Some(b), Some(a), Some(s)) => s.canonical(name, b) == s.canonical(name, a),
                            (b, a, _) => b == a,
                        };
                        let sensitive = schema.map_or_else(|| looks_secret(name), |s| s.is_sensitive(name));
                        (!same).then(|| AttrDiff {
                            field: name.clone(),
                            before: b.map(|v| redact_value(sensitive, v)),
                            after: a.map(|v| redact_value(sensitive, v)),
                            forces_replacement: false,
                            sensitive,
                        })
                    })
                    .collect();
                if !diffs.is_empty() {
                    drifts.push(Drift { address: address.clone(), deleted: false, diffs });
                }
            }
        }
    }
    drifts
}

/// SHA-256 over the declaration (addresses, inputs with references, lifecycle, outputs), hex. Sensitive
/// input values are left out, so the digest written into a plan file cannot be used to guess them.
pub(crate) fn config_digest(stack: &Stack) -> String {
    let mut hasher = Sha256::new();
    hasher.update(stack.name().as_bytes());
    let mut nodes: Vec<&Node> = stack.nodes().iter().collect();
    nodes.sort_by(|a, b| a.address.cmp(&b.address));
    for node in nodes {
        let inputs = redact(Some(node.schema), &node.inputs);
        let lifecycle = &node.lifecycle;
        let record = serde_json::json!({
            "address": node.address,
            "inputs": inputs,
            "protect": lifecycle.protect,
            "ignore_changes": lifecycle.ignore_changes,
            "create_before_destroy": lifecycle.create_before_destroy,
            "depends_on": node.depends_on,
        });
        hasher.update(record.to_string().as_bytes());
        hasher.update([0]);
    }
    for output in stack.outputs() {
        let value = if output.sensitive { Attr::Sensitive } else { output.value.clone() };
        hasher.update(serde_json::json!({ "output": output.name, "value": value }).to_string().as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()
}
