//! [`Provider`]: the only code that touches the outside world, and [`Providers`], the registry the engine
//! dispatches through by resource kind.
//!
//! A provider reads many resources of one kind in one call (so refresh can batch: one `Describe*` per page,
//! not one per resource), and creates, updates and deletes one resource at a time. It receives inputs with
//! every reference resolved, and returns what it observed: the inputs as the cloud has them (the fields
//! paranix manages, no more) and the outputs.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use crate::address::Address;
use crate::attr::Attrs;
use crate::error::{Error, ErrorKind, Result};
use crate::events::{Event, Observer};
use crate::schema::Schema;
use crate::state::ResourceState;

/// What a provider observed about one object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Observed {
    /// The managed input fields, as the cloud has them.
    pub inputs: Attrs,
    /// The outputs.
    pub outputs: Attrs,
}

/// One resource to read during refresh.
#[derive(Clone, Copy, Debug)]
pub struct ReadRequest<'a> {
    /// The resource.
    pub address: &'a Address,
    /// Its kind's schema.
    pub schema: &'static Schema,
    /// For managed resources the recorded state; for data sources `inputs` holds the resolved configuration.
    pub inputs: &'a Attrs,
    /// The recorded outputs (ids to look up by); empty for data sources.
    pub outputs: &'a Attrs,
    /// For managed resources, the configuration's inputs now (references resolved against the recorded state
    /// where it can), when the resource is still declared: what a provider should trust over the recorded
    /// inputs to reach the resource at all (a rotated SSH host key, say). `None` for data sources.
    pub configured: Option<&'a Attrs>,
}

/// Context of one mutating call.
pub struct StepContext {
    /// The stack.
    pub stack: String,
    /// The resource.
    pub address: Address,
    /// Its kind's schema.
    pub schema: &'static Schema,
    /// How many times this address has been created (1 for the first create).
    pub generation: u64,
    /// The lineage of the stack's state: a new state history never reuses an old one's tokens.
    pub lineage: String,
    /// For updates: the input fields to change (those the plan showed, against the refreshed state, and any
    /// that differ from the recorded state).
    pub changed: Vec<String>,
    /// For updates: the resource's attributes as the plan saw them after refresh (sensitive values redacted),
    /// e.g. tags added outside paranix that the update must remove.
    pub observed: Option<Attrs>,
    observer: Arc<dyn Observer>,
}

impl StepContext {
    pub(crate) fn new(
        stack: &str,
        address: Address,
        schema: &'static Schema,
        generation: u64,
        observer: Arc<dyn Observer>,
    ) -> Self {
        StepContext {
            stack: stack.to_owned(),
            address,
            schema,
            generation,
            lineage: String::new(),
            changed: Vec::new(),
            observed: None,
            observer,
        }
    }

    /// Whether an update must change `field` (every field, when no list was given).
    pub fn changes(&self, field: &str) -> bool {
        self.changed.is_empty() || self.changed.iter().any(|f| f == field)
    }

    /// What the cloud had for the resource when the plan was made (falls back to `recorded`).
    pub fn observed_or<'a>(&'a self, recorded: &'a Attrs) -> &'a Attrs {
        self.observed.as_ref().unwrap_or(recorded)
    }

    /// An idempotency token for create calls: SHA-256 of stack, state lineage, address and generation, hex
    /// (64 characters, the longest `ClientToken` EC2 accepts). The same create retried after a crash sends the
    /// same token; a deliberate re-create after a delete sends a new one, and so does the same address in a
    /// new state history (AWS remembers tokens for a while after the object is gone).
    pub fn idempotency_token(&self) -> String {
        idempotency_token(&self.stack, &self.lineage, &self.address, self.generation)
    }

    /// Reports progress (waiting for a state, bytes uploaded) to the run's observer.
    pub fn progress(&self, message: impl Into<String>) {
        self.observer.on_event(&Event::Progress {
            stack: self.stack.clone(),
            address: self.address.clone(),
            message: message.into(),
        });
    }
}

pub(crate) fn idempotency_token(stack: &str, lineage: &str, address: &Address, generation: u64) -> String {
    let digest = Sha256::digest(format!("paranix\0{stack}\0{lineage}\0{address}\0{generation}").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The seam between the engine and the outside world.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Reads every request (all of one kind) and returns, in the same order, what exists: `None` for an
    /// object that is gone. Data sources return their values as `outputs`.
    async fn read(&self, kind: &str, requests: &[ReadRequest<'_>]) -> Result<Vec<Option<Observed>>>;

    /// Creates the object described by the resolved `inputs`.
    async fn create(&self, ctx: &StepContext, inputs: &Attrs) -> Result<Observed>;

    /// Updates the object in place from `prior` to the resolved `inputs`; `ctx.changed` lists the fields to
    /// change (compare with `prior` only for what it cannot tell).
    async fn update(&self, ctx: &StepContext, prior: &ResourceState, inputs: &Attrs) -> Result<Observed>;

    /// Deletes the object; an object that is already gone is not an error.
    async fn delete(&self, ctx: &StepContext, prior: &ResourceState) -> Result<()>;

    /// Completes a resource's inputs with what only this provider can tell before planning, without side
    /// effects (a Nix image's derivation path). Called at plan time and again at apply time; returns the
    /// inputs and, when something could not be worked out, a note for the plan. The default changes nothing.
    async fn prepare(&self, _address: &Address, inputs: &Attrs) -> Result<(Attrs, Option<String>)> {
        Ok((inputs.clone(), None))
    }
}

/// The providers of a run, by resource kind, with an optional fallback for every other kind.
#[derive(Clone, Default)]
pub struct Providers {
    by_kind: BTreeMap<String, Arc<dyn Provider>>,
    fallback: Option<Arc<dyn Provider>>,
}

impl Providers {
    /// No providers: enough for offline plans of stacks with empty state.
    pub fn new() -> Self {
        Providers::default()
    }

    /// Registers `provider` for `kinds`.
    pub fn register(mut self, kinds: &[&str], provider: Arc<dyn Provider>) -> Self {
        for kind in kinds {
            self.by_kind.insert((*kind).to_owned(), provider.clone());
        }
        self
    }

    /// Uses `provider` for every kind without a registered provider.
    pub fn fallback(mut self, provider: Arc<dyn Provider>) -> Self {
        self.fallback = Some(provider);
        self
    }

    /// Whether a provider is registered for exactly `kind` (the fallback does not count).
    pub fn handles_exactly(&self, kind: &str) -> bool {
        self.by_kind.contains_key(kind)
    }

    /// Whether some provider handles `kind`.
    pub fn handles(&self, kind: &str) -> bool {
        self.by_kind.contains_key(kind) || self.fallback.is_some()
    }

    /// The provider for `kind`, or an [`ErrorKind::NoProvider`] error naming the kind.
    pub fn get(&self, kind: &str) -> Result<&Arc<dyn Provider>> {
        self.by_kind.get(kind).or(self.fallback.as_ref()).ok_or_else(|| {
            Error::new(ErrorKind::NoProvider, format!("no provider is configured for resources of kind `{kind}`"))
        })
    }
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field("kinds", &self.by_kind.keys().collect::<Vec<_>>())
            .field("fallback", &self.fallback.is_some())
            .finish()
    }
}
