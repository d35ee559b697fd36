//! [`Stack`]: a named set of resources with one state, [`Project`]: stacks applied in order, and the
//! cross-stack pieces: typed [`OutputKey`]s and the [`RemoteState`] data source.

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::address::{Address, Mode};
use crate::attr::{Attr, Attrs};
use crate::error::{Error, FieldError, Result};
use crate::resource::{Handle, Lifecycle, Resource, Validator};
use crate::schema::{Field, Schema};
use crate::value::{IntoAttr, Output, Value};

/// Where a stack keeps its state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Backend {
    /// A JSON file `<dir>/<stack>.json` next to a lock file. `dir: None` means the run's state directory
    /// (`--state-dir`, `PARANIX_STATE_DIR`, else `.paranix`).
    #[default]
    Local,
    /// A JSON file in a fixed directory.
    LocalDir {
        /// The directory.
        dir: PathBuf,
    },
    /// An object in an S3 bucket, locked with a conditional write.
    S3 {
        /// The bucket.
        bucket: String,
        /// The object key, e.g. `paranix/printerfacts.json`.
        key: String,
    },
}

impl Backend {
    /// State in `bucket` under `paranix/<stack>.json`.
    pub fn s3(bucket: impl Into<String>, stack: &str) -> Self {
        Backend::S3 { bucket: bucket.into(), key: format!("paranix/{stack}.json") }
    }
}

/// One declared resource as the planner sees it: address, schema, inputs with unresolved references,
/// lifecycle options and dependencies.
#[derive(Clone, Debug)]
pub struct Node {
    /// The address.
    pub address: Address,
    /// The kind's schema.
    pub schema: &'static Schema,
    /// Input fields, references unresolved.
    pub inputs: Attrs,
    /// Lifecycle options.
    pub lifecycle: Lifecycle,
    /// Every resource this one depends on (referenced or declared), sorted.
    pub depends_on: Vec<Address>,
}

/// A typed name for a stack output, shared between the stack that exports it and the ones that read it:
///
/// ```
/// use paranix::prelude::*;
/// pub const AMI_ID: OutputKey<ImageId> = OutputKey::new("ami_id");
/// ```
pub struct OutputKey<T> {
    name: &'static str,
    sensitive: bool,
    _type: PhantomData<fn() -> T>,
}

impl<T> OutputKey<T> {
    /// A non-sensitive output called `name`.
    pub const fn new(name: &'static str) -> Self {
        OutputKey { name, sensitive: false, _type: PhantomData }
    }

    /// A sensitive output: its value is redacted in plans and `output` listings unless asked for by name.
    pub const fn sensitive(name: &'static str) -> Self {
        OutputKey { name, sensitive: true, _type: PhantomData }
    }

    /// The output's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

/// A stack output: a name, a value expression and its sensitivity.
#[derive(Clone, Debug)]
pub struct StackOutput {
    /// The name.
    pub name: String,
    /// The value; references unresolved.
    pub value: Attr,
    /// Redacted in plans and listings.
    pub sensitive: bool,
}

/// A named set of resources sharing one state (Terraform's root module, Pulumi's stack).
#[derive(Clone, Debug)]
pub struct Stack {
    name: String,
    backend: Backend,
    nodes: Vec<Node>,
    index: BTreeMap<Address, usize>,
    outputs: Vec<StackOutput>,
    errors: Vec<FieldError>,
}

impl Stack {
    /// An empty stack called `name` (letters, digits, `_`, `-`), keeping its state locally.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        let mut errors = Vec::new();
        if let Err(message) = Address::validate_name(&name) {
            errors.push(FieldError { address: format!("stack {name:?}"), field: "name".into(), message });
        }
        Stack { name, backend: Backend::Local, nodes: Vec::new(), index: BTreeMap::new(), outputs: Vec::new(), errors }
    }

    /// Records a problem found while declaring resources (reported by [`Stack::check`] with the others).
    pub(crate) fn record_error(&mut self, address: &Address, field: &str, message: impl Into<String>) {
        self.errors.push(FieldError { address: address.to_string(), field: field.into(), message: message.into() });
    }

    /// Sets where the stack keeps its state.
    pub fn backend(mut self, backend: Backend) -> Self {
        self.backend = backend;
        self
    }

    /// The stack's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where the stack keeps its state.
    pub fn state_backend(&self) -> &Backend {
        &self.backend
    }

    /// Declares a resource and returns its handle, for wiring its outputs into other resources.
    ///
    /// Invalid fields and duplicate addresses are recorded and reported by [`Stack::check`] (which every
    /// operation runs first), all at once and before any API call.
    pub fn add<R: Resource>(&mut self, resource: R) -> Handle<R> {
        let address = resource.address();
        if let Err(message) = Address::validate_name(resource.name()) {
            self.errors.push(FieldError { address: address.to_string(), field: "name".into(), message });
        }
        resource.validate(&mut Validator::new(&address, &mut self.errors));
        if self.index.contains_key(&address) {
            self.errors.push(FieldError {
                address: address.to_string(),
                field: "name".into(),
                message: format!("the address {address} is declared twice in stack {:?}", self.name),
            });
            return Handle::new(address);
        }
        let inputs = resource.inputs();
        let lifecycle = resource.lifecycle().clone();
        let mut deps = BTreeSet::new();
        for value in inputs.values() {
            value.visit_refs(&mut |r| {
                deps.insert(r.address.clone());
            });
        }
        deps.extend(lifecycle.depends_on.iter().cloned());
        deps.remove(&address);
        self.index.insert(address.clone(), self.nodes.len());
        self.nodes.push(Node {
            address: address.clone(),
            schema: R::schema(),
            inputs,
            lifecycle,
            depends_on: deps.into_iter().collect(),
        });
        Handle::new(address)
    }

    /// Exports a typed output, readable by other stacks through a [`RemoteState`] handle's `output(readable by other stacks through [`RemoteState::output`].key)`.
    pub fn export<T: IntoAttr>(&mut self, key: &OutputKey<T>, value: impl Into<Value<T>>) {
        let value = value.into().to_attr();
        if self.outputs.iter().any(|o| o.name == key.name) {
            self.errors.push(FieldError {
                address: format!("stack {:?}", self.name),
                field: format!("outputs.{}", key.name),
                message: "the output is exported twice".into(),
            });
            return;
        }
        self.outputs.push(StackOutput { name: key.name.to_owned(), value, sensitive: key.sensitive });
    }

    /// Replaces a declared resource's inputs (with what a provider prepared at plan time).
    pub(crate) fn set_inputs(&mut self, address: &Address, inputs: Attrs) {
        if let Some(&i) = self.index.get(address) {
            self.nodes[i].inputs = inputs;
        }
    }

    /// The declared resources, in declaration order.
    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// The resource at `address`, if declared.
    pub fn node(&self, address: &Address) -> Option<&Node> {
        self.index.get(address).map(|&i| &self.nodes[i])
    }

    /// The declared outputs.
    pub fn outputs(&self) -> &[StackOutput] {
        &self.outputs
    }

    /// Checks the whole declaration: field values, duplicates, references to undeclared resources or
    /// attributes, and dependency cycles. Every operation runs it before touching anything.
    pub fn check(&self) -> Result<()> {
        let mut errors = self.errors.clone();
        for node in &self.nodes {
            for (field, value) in &node.inputs {
                value.visit_refs(&mut |r| match self.node(&r.address) {
                    None => errors.push(FieldError {
                        address: node.address.to_string(),
                        field: field.clone(),
                        message: format!("refers to {}, which is not declared in stack {:?}", r.address, self.name),
                    }),
                    Some(target) if !target.schema.has_attribute(&r.attribute) => errors.push(FieldError {
                        address: node.address.to_string(),
                        field: field.clone(),
                        message: format!("refers to {r}, but {} has no attribute `{}`", r.address, r.attribute),
                    }),
                    // A secret may only flow where it stays secret: a field that is not sensitive is shown in
                    // plans, events and state, and a NixOS system's values land in the world-readable store.
                    Some(target) if target.schema.is_sensitive(&r.attribute) && !node.schema.is_sensitive(field) => {
                        errors.push(FieldError {
                            address: node.address.to_string(),
                            field: field.clone(),
                            message: format!(
                                "refers to {r}, which is secret, but this field is not: it would show in plans and \
                                 state{}",
                                if node.address.kind() == "nixos_system" {
                                    " and be copied into the world-readable Nix store; deliver secrets to hosts \
                                     out of band (agenix, sops-nix, a runtime fetch), never as option values"
                                } else {
                                    ""
                                }
                            ),
                        })
                    }
                    Some(_) => {}
                });
            }
            for dep in &node.lifecycle.depends_on {
                if self.node(dep).is_none() {
                    errors.push(FieldError {
                        address: node.address.to_string(),
                        field: "depends_on".into(),
                        message: format!("{dep} is not declared in stack {:?}", self.name),
                    });
                }
            }
            for ignored in &node.lifecycle.ignore_changes {
                if node.schema.field(ignored).is_none() {
                    let valid: Vec<_> = node.schema.fields.iter().map(|f| f.name).collect();
                    errors.push(FieldError {
                        address: node.address.to_string(),
                        field: "ignore_changes".into(),
                        message: format!(
                            "`{ignored}` is not a field of {}; fields: {}",
                            node.schema.kind,
                            valid.join(", ")
                        ),
                    });
                }
            }
        }
        for output in &self.outputs {
            output.value.visit_refs(&mut |r| match self.node(&r.address) {
                None => errors.push(FieldError {
                    address: format!("stack {:?}", self.name),
                    field: format!("outputs.{}", output.name),
                    message: format!("refers to {}, which is not declared in this stack", r.address),
                }),
                Some(target) if target.schema.is_sensitive(&r.attribute) && !output.sensitive => {
                    errors.push(FieldError {
                        address: format!("stack {:?}", self.name),
                        field: format!("outputs.{}", output.name),
                        message: format!(
                            "refers to {r}, which is secret: declare the output with `OutputKey::sensitive`"
                        ),
                    })
                }
                Some(_) => {}
            });
        }
        if !errors.is_empty() {
            return Err(Error::from(errors));
        }
        crate::graph::Graph::of(self).map(|_| ())
    }
}

/// Stacks applied in order (the reference workflow has three: bootstrap, aws_image, printerfacts).
#[derive(Clone, Debug, Default)]
pub struct Project {
    stacks: Vec<Stack>,
}

impl Project {
    /// An empty project.
    pub fn new() -> Self {
        Project::default()
    }

    /// Appends a stack; stacks are planned and applied in the order added, destroyed in reverse.
    pub fn stack(mut self, stack: Stack) -> Self {
        self.stacks.push(stack);
        self
    }

    /// The stacks, in order.
    pub fn stacks(&self) -> &[Stack] {
        &self.stacks
    }

    /// The stack called `name`.
    pub fn get(&self, name: &str) -> Option<&Stack> {
        self.stacks.iter().find(|s| s.name == name)
    }

    /// Checks every stack, and that stack names are unique.
    pub fn check(&self) -> Result<()> {
        let mut seen = BTreeSet::new();
        for stack in &self.stacks {
            if !seen.insert(stack.name()) {
                return Err(Error::invalid(format!("the stack name {:?} is used twice in the project", stack.name())));
            }
        }
        let problems: Vec<String> = self.stacks.iter().filter_map(|s| s.check().err()).map(|e| e.to_string()).collect();
        if problems.is_empty() { Ok(()) } else { Err(Error::invalid(problems.join("\n"))) }
    }
}

/// Reads another stack's outputs (Terraform's `terraform_remote_state`). A data source: read, never changed.
#[derive(Clone, Debug)]
pub struct RemoteState {
    stack: String,
    backend: Backend,
    lifecycle: Lifecycle,
}

static REMOTE_STATE_FIELDS: [Field; 2] = [Field::new("stack"), Field::new("backend")];

/// The schema of [`RemoteState`].
pub static REMOTE_STATE: Schema = Schema {
    kind: "remote_state",
    mode: Mode::Data,
    fields: &REMOTE_STATE_FIELDS,
    outputs: &[],
    id: None,
    predict: crate::schema::predict_nothing,
    open_outputs: true,
};

impl RemoteState {
    /// Reads the outputs of `stack`, from wherever that stack keeps its state. The data source's address is
    /// `data.remote_state.<stack name>`.
    pub fn of(stack: &Stack) -> Self {
        RemoteState { stack: stack.name.clone(), backend: stack.backend.clone(), lifecycle: Lifecycle::default() }
    }

    /// The stack whose outputs are read.
    pub fn stack_name(&self) -> &str {
        &self.stack
    }
}

impl Resource for RemoteState {
    fn schema() -> &'static Schema {
        &REMOTE_STATE
    }

    fn name(&self) -> &str {
        &self.stack
    }

    fn inputs(&self) -> Attrs {
        let backend = serde_json::to_value(&self.backend).map(|j| Attr::from_json(&j));
        Attrs::from([
            ("stack".to_owned(), Attr::str(&self.stack)),
            ("backend".to_owned(), backend.ok().and_then(|r| r.ok()).unwrap_or(Attr::Null)),
        ])
    }

    fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    fn lifecycle_mut(&mut self) -> &mut Lifecycle {
        &mut self.lifecycle
    }
}

impl Handle<RemoteState> {
    /// The other stack's output `key`, typed as that stack exported it.
    pub fn output<T>(&self, key: &OutputKey<T>) -> Output<T> {
        self.attribute(key.name)
    }
}
