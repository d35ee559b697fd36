//! The one public error type of paranix: an [`Error`] with a [`kind`](Error::kind) callers can match on.
//!
//! Every error names what it was doing and the thing it was doing it to (a resource address, a stack, a file),
//! so a message read in a CI log is enough to act on. Secrets never reach an error: resources carry sensitive
//! values only in fields the schema marks as sensitive, and no error formats a field value of such a field.

use std::fmt;

use crate::address::Address;

/// What went wrong, for callers that need to react differently (retry, ask the user to unlock, fix config).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The configuration is invalid: a bad field value, a duplicate address, a missing file.
    InvalidConfig,
    /// The resource graph has a dependency cycle; the message names every address on it.
    Cycle,
    /// The plan would delete or replace a resource marked `protect`.
    Protected,
    /// Another operation holds the stack's lock; the message names holder, operation and age.
    LockHeld,
    /// A lock left behind by a process that is gone; `state unlock ID` releases it deliberately.
    LockStale,
    /// State could not be read, parsed or written, or belongs to another stack or a newer schema.
    State,
    /// The place a stack's state is kept does not exist yet (its S3 bucket is made by an earlier stack).
    BackendMissing,
    /// A saved plan no longer matches the state or the configuration it was made for.
    StalePlan,
    /// A provider (the code that talks to the outside world) failed; the message has the address and cause.
    Provider,
    /// No provider is registered for a resource kind (e.g. planning offline against a non-empty state).
    NoProvider,
    /// An AWS API call failed; the message has the resource address, the AWS error code and message.
    Aws,
    /// The operation was cancelled (by a signal or an observer).
    Cancelled,
    /// A file or process I/O error outside the state store.
    Io,
    /// Input from the command line was invalid.
    Usage,
}

/// The error type of every fallible paranix operation.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// `Result` with paranix's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An error of `kind` with a complete, human-readable message.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error { kind, message: message.into(), source: None }
    }

    /// Attach the underlying cause (an I/O error, an SDK error). It is shown after the message.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// What kind of failure this is.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the cause chain.
    pub fn message(&self) -> &str {
        &self.message
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidConfig, message)
    }

    pub(crate) fn state(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::State, message)
    }

    pub(crate) fn provider(address: &Address, message: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Provider, format!("{address}: {message}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static))
    }
}

/// One invalid field of one resource: the unit of configuration errors, collected and reported together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The resource (or `stack` for stack-level problems).
    pub address: String,
    /// The field, in the builder's naming (`ingress[0].cidr_blocks`).
    pub field: String,
    /// What is wrong and, where it helps, what is allowed.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: field `{}`: {}", self.address, self.field, self.message)
    }
}

impl From<Vec<FieldError>> for Error {
    fn from(errors: Vec<FieldError>) -> Self {
        let mut message = format!("invalid configuration ({} problem{}):", errors.len(), plural(errors.len()));
        for e in &errors {
            message.push_str("\n  - ");
            message.push_str(&e.to_string());
        }
        Error::invalid(message)
    }
}

pub(crate) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
