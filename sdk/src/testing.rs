//! Testing support: plan stacks offline for `insta` snapshots, and [`MemoryCloud`], an in-memory provider for
//! exercising the executor without a cloud.
//!
//! Snapshot-test your infrastructure in your own test suite:
//!
//! ```
//! use paranix::prelude::*;
//!
//! let mut stack = Stack::new("site");
//! stack.add(s3::Bucket::new("assets").bucket("example-site-assets").versioning(true));
//! let plan = paranix::testing::plan_offline(&stack).expect("plans");
//! assert_eq!(plan.summary().add, 1);
//! // insta::assert_snapshot!(plan.to_string());
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use crate::address::{Address, Mode};
use crate::attr::{Attr, Attrs};
use crate::error::{Error, Result};
use crate::plan::{Plan, PlanOptions, plan};
use crate::provider::{Observed, Provider, ReadRequest, StepContext};
use crate::stack::Stack;
use crate::state::{ResourceState, State};

/// Plans `stack` against an empty state, without reading anything.
pub fn plan_offline(stack: &Stack) -> Result<Plan> {
    let empty = State::new(stack.name());
    plan(stack, &empty, &empty, &PlanOptions::default())
}

/// Plans `stack` against a recorded `state` (e.g. a fixture), without refreshing it.
pub fn plan_against(stack: &Stack, state: &State) -> Result<Plan> {
    plan(stack, state, state, &PlanOptions::default())
}

/// Parses a state fixture (the JSON a state file holds).
pub fn state_from_json(stack: &str, json: &str) -> Result<State> {
    State::from_json(json, stack, "fixture")
}

/// A call made to a [`MemoryCloud`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// A batched read of one kind, with how many resources it covered.
    Read(String, usize),
    /// A create.
    Create(Address),
    /// An update.
    Update(Address),
    /// A delete.
    Delete(Address),
}

#[derive(Default)]
struct Cloud {
    /// Objects in creation order: their address, and what they hold. Objects are found by their `id`
    /// output when they have one (so a create-before-destroy pair can exist side by side), else by address.
    objects: Vec<(Address, Observed)>,
    calls: Vec<Call>,
    failures: BTreeMap<Address, String>,
    next_id: u64,
}

/// An in-memory cloud implementing [`Provider`] for every kind: it stores inputs, invents outputs (ids,
/// ARNs), records every call, and can be told to fail, to be slow, or to drift.
#[derive(Clone, Default)]
pub struct MemoryCloud {
    inner: Arc<Mutex<Cloud>>,
    delay: Arc<Mutex<Duration>>,
    in_flight: Arc<AtomicUsize>,
    max_in_flight: Arc<AtomicUsize>,
}

impl MemoryCloud {
    /// An empty cloud.
    pub fn new() -> Self {
        MemoryCloud::default()
    }

    fn cloud(&self) -> std::sync::MutexGuard<'_, Cloud> {
        self.inner.lock().expect("memory cloud mutex")
    }

    /// Makes every mutating call take `delay` (to observe concurrency).
    pub fn set_delay(&self, delay: Duration) {
        *self.delay.lock().expect("mutex") = delay;
    }

    /// Makes calls for `address` fail with `message`.
    pub fn fail(&self, address: &Address, message: &str) {
        self.cloud().failures.insert(address.clone(), message.to_owned());
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.cloud().calls.clone()
    }

    /// The objects that exist now, by address (the newest when an address has two).
    pub fn objects(&self) -> BTreeMap<Address, Observed> {
        self.cloud().objects.iter().cloned().collect()
    }

    /// How many objects exist now (counting both halves of an unfinished create-before-destroy).
    pub fn object_count(&self) -> usize {
        self.cloud().objects.len()
    }

    /// The most mutating calls that ran at the same time.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight.load(Ordering::SeqCst)
    }

    /// Changes an input of an existing object behind paranix's back (drift).
    pub fn drift(&self, address: &Address, field: &str, value: Attr) {
        if let Some((_, o)) = self.cloud().objects.iter_mut().rev().find(|(a, _)| a == address) {
            o.inputs.insert(field.to_owned(), value);
        }
    }

    /// Deletes an object behind paranix's back.
    pub fn remove(&self, address: &Address) {
        self.cloud().objects.retain(|(a, _)| a != address);
    }

    async fn mutate<T>(&self, call: Call, address: &Address, f: impl FnOnce(&mut Cloud) -> T) -> Result<T> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let delay = *self.delay.lock().expect("mutex");
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let result = {
            let mut cloud = self.cloud();
            cloud.calls.push(call);
            match cloud.failures.get(address) {
                Some(message) => Err(Error::provider(address, message)),
                None => Ok(f(&mut cloud)),
            }
        };
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        result
    }
}

impl Cloud {
    /// The position of the object recorded with `outputs` at `address`.
    fn find(&self, address: &Address, outputs: &Attrs) -> Option<usize> {
        match outputs.get("id") {
            Some(id) => self.objects.iter().position(|(a, o)| a == address && o.outputs.get("id") == Some(id)),
            None => self.objects.iter().rposition(|(a, _)| a == address),
        }
    }
}

fn invent_outputs(ctx: &StepContext, n: u64, inputs: &Attrs) -> Attrs {
    let predicted = (ctx.schema.predict)(inputs);
    ctx.schema
        .outputs
        .iter()
        .map(|o| {
            let value = predicted.get(o.name).cloned().unwrap_or_else(|| match o.name {
                "id" => Attr::Str(format!("{}-{n:04}", ctx.address.kind().trim_start_matches("aws_"))),
                "arn" => Attr::Str(format!("arn:aws:memory:::{}/{n}", ctx.address)),
                "public_ip" => Attr::Str(format!("198.51.100.{}", n % 250 + 1)),
                "private_ip" => Attr::Str(format!("10.0.0.{}", n % 250 + 1)),
                other => Attr::Str(format!("{other}-{n}")),
            });
            (o.name.to_owned(), value)
        })
        .collect()
}

#[async_trait]
impl Provider for MemoryCloud {
    /// Inputs that a real provider works out at plan time (a Nix derivation) get a fixed stand-in value.
    async fn prepare(&self, address: &Address, inputs: &Attrs) -> Result<(Attrs, Option<String>)> {
        let prepared = inputs
            .iter()
            .map(|(k, v)| match v {
                Attr::Unknown => (k.clone(), Attr::Str(format!("memory:{address}:{k}"))),
                other => (k.clone(), other.clone()),
            })
            .collect();
        Ok((prepared, None))
    }

    async fn read(&self, kind: &str, requests: &[ReadRequest<'_>]) -> Result<Vec<Option<Observed>>> {
        let mut cloud = self.cloud();
        cloud.calls.push(Call::Read(kind.to_owned(), requests.len()));
        Ok(requests
            .iter()
            .map(|r| match r.address.mode() {
                Mode::Managed => cloud.find(r.address, r.outputs).map(|i| cloud.objects[i].1.clone()),
                Mode::Data => Some(Observed { inputs: r.inputs.clone(), outputs: Attrs::new() }),
            })
            .collect())
    }

    async fn create(&self, ctx: &StepContext, inputs: &Attrs) -> Result<Observed> {
        self.mutate(Call::Create(ctx.address.clone()), &ctx.address, |cloud| {
            cloud.next_id += 1;
            let observed = Observed { inputs: inputs.clone(), outputs: invent_outputs(ctx, cloud.next_id, inputs) };
            cloud.objects.push((ctx.address.clone(), observed.clone()));
            observed
        })
        .await
    }

    async fn update(&self, ctx: &StepContext, prior: &ResourceState, inputs: &Attrs) -> Result<Observed> {
        self.mutate(Call::Update(ctx.address.clone()), &ctx.address, |cloud| {
            let observed = Observed { inputs: inputs.clone(), outputs: prior.outputs.clone() };
            match cloud.find(&ctx.address, &prior.outputs) {
                Some(i) => cloud.objects[i].1 = observed.clone(),
                None => cloud.objects.push((ctx.address.clone(), observed.clone())),
            }
            observed
        })
        .await
    }

    async fn delete(&self, ctx: &StepContext, prior: &ResourceState) -> Result<()> {
        self.mutate(Call::Delete(ctx.address.clone()), &ctx.address, |cloud| {
            if let Some(i) = cloud.find(&ctx.address, &prior.outputs) {
                cloud.objects.remove(i);
            }
        })
        .await
    }
}
