//! Events: how a run reports progress. The library never prints; the CLI (or your tool) draws events.

use std::time::Duration;

use serde::Serialize;

use crate::address::Address;
use crate::plan::Action;

/// Something that happened during a run. Values of sensitive fields never appear in events.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Event {
    /// Refresh of a stack started.
    RefreshStarted {
        /// The stack.
        stack: String,
        /// Resources in state to read.
        resources: usize,
    },
    /// A step (one resource's create, update, delete or read) started.
    StepStarted {
        /// The stack.
        stack: String,
        /// The resource.
        address: Address,
        /// What is done to it (a replace shows as its create and its delete).
        action: Action,
    },
    /// A step finished.
    StepFinished {
        /// The stack.
        stack: String,
        /// The resource.
        address: Address,
        /// What was done.
        action: Action,
        /// How long it took.
        #[serde(with = "millis")]
        elapsed: Duration,
        /// The object's id, when it has one.
        id: Option<String>,
    },
    /// A step turned out unnecessary at apply time (its inputs, once known, matched the state).
    StepSkipped {
        /// The stack.
        stack: String,
        /// The resource.
        address: Address,
    },
    /// A step failed.
    StepFailed {
        /// The stack.
        stack: String,
        /// The resource.
        address: Address,
        /// What was attempted.
        action: Action,
        /// The error.
        message: String,
    },
    /// A provider's progress note (waiting for an instance, bytes uploaded).
    Progress {
        /// The stack.
        stack: String,
        /// The resource.
        address: Address,
        /// The note.
        message: String,
    },
    /// Operations an interrupted run left pending were taken over by this run.
    Recovered {
        /// The stack.
        stack: String,
        /// The operations (`Create aws_instance.web`, ...).
        operations: Vec<String>,
    },
    /// The state was written.
    StatePersisted {
        /// The stack.
        stack: String,
        /// Its new serial.
        serial: u64,
    },
}

mod millis {
    pub(super) fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u128(d.as_millis())
    }
}

/// Receives events. Implemented for closures: `|e: &Event| ...`.
pub trait Observer: Send + Sync {
    /// Called for every event, in order, from the task that produced it. Keep it quick.
    fn on_event(&self, event: &Event);
}

impl<F: Fn(&Event) + Send + Sync> Observer for F {
    fn on_event(&self, event: &Event) {
        self(event)
    }
}

/// An observer that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Observer for Silent {
    fn on_event(&self, _: &Event) {}
}
