//! The [`Resource`] trait typed builders implement, the lifecycle options every resource has, and the
//! [`Handle`] a stack returns for wiring outputs into other resources.

use std::marker::PhantomData;

use crate::address::Address;
use crate::attr::Attrs;
use crate::error::FieldError;
use crate::schema::Schema;

/// Lifecycle options (Terraform's `lifecycle` block), set through [`ResourceExt`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Lifecycle {
    /// Refuse to plan a delete or replace of this resource.
    pub protect: bool,
    /// Input fields whose changes are ignored (the state keeps what the cloud has).
    pub ignore_changes: Vec<String>,
    /// On replacement, create the new object before deleting the old one.
    pub create_before_destroy: bool,
    /// Extra dependencies that no field reference expresses.
    pub depends_on: Vec<Address>,
}

/// Collects [`FieldError`]s for one resource, so all problems are reported at once.
pub struct Validator<'a> {
    address: &'a Address,
    errors: &'a mut Vec<FieldError>,
}

impl<'a> Validator<'a> {
    pub(crate) fn new(address: &'a Address, errors: &'a mut Vec<FieldError>) -> Self {
        Validator { address, errors }
    }

    /// Records a problem with `field`.
    pub fn error(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError {
            address: self.address.to_string(),
            field: field.into(),
            message: message.into(),
        });
    }

    /// Records a problem with `field` when `result` is an error.
    pub fn check(&mut self, field: impl Into<String>, result: Result<(), String>) {
        if let Err(message) = result {
            self.error(field, message);
        }
    }
}

/// A typed resource description: implemented by every builder in [`crate::aws`] and usable for your own kinds.
pub trait Resource: Sized {
    /// The kind's schema.
    fn schema() -> &'static Schema;

    /// The logical name (the second half of the address).
    fn name(&self) -> &str;

    /// The input fields as attributes; references stay unresolved.
    fn inputs(&self) -> Attrs;

    /// Checks field values; called when the resource is added to a stack, before any API call.
    fn validate(&self, _v: &mut Validator<'_>) {}

    /// The lifecycle options.
    fn lifecycle(&self) -> &Lifecycle;

    /// The lifecycle options, mutably (used by [`ResourceExt`]).
    fn lifecycle_mut(&mut self) -> &mut Lifecycle;

    /// The resource's address.
    fn address(&self) -> Address {
        let schema = Self::schema();
        match schema.mode {
            crate::address::Mode::Managed => Address::managed(schema.kind, self.name()),
            crate::address::Mode::Data => Address::data(schema.kind, self.name()),
        }
    }
}

/// Lifecycle options for every resource builder.
pub trait ResourceExt: Resource {
    /// Refuse to plan a delete or replace of this resource (for state buckets and other things you keep).
    fn protect(mut self) -> Self {
        self.lifecycle_mut().protect = true;
        self
    }

    /// Ignore changes to these input fields (e.g. `["tags"]` when another system manages tags).
    fn ignore_changes<I, S>(mut self, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.lifecycle_mut().ignore_changes.extend(fields.into_iter().map(Into::into));
        self
    }

    /// On replacement, create the new object before deleting the old one.
    fn create_before_destroy(mut self) -> Self {
        self.lifecycle_mut().create_before_destroy = true;
        self
    }

    /// Depend on `other` even though no field references it.
    fn depends_on<R>(mut self, other: &Handle<R>) -> Self {
        self.lifecycle_mut().depends_on.push(other.address().clone());
        self
    }
}

impl<R: Resource> ResourceExt for R {}

/// A resource declared in a stack: its address plus typed accessors for its outputs (`bucket.arn()`).
pub struct Handle<R> {
    address: Address,
    _kind: PhantomData<fn() -> R>,
}

impl<R> Handle<R> {
    pub(crate) fn new(address: Address) -> Self {
        Handle { address, _kind: PhantomData }
    }

    /// The declared resource's address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// A typed output of this resource by attribute name; the typed accessors (`bucket.arn()`) call this.
    pub fn attribute<T>(&self, attribute: &str) -> crate::value::Output<T> {
        crate::value::Output::of(&self.address, attribute)
    }
}

impl<R> Clone for Handle<R> {
    fn clone(&self) -> Self {
        Handle::new(self.address.clone())
    }
}

impl<R> std::fmt::Debug for Handle<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Handle({})", self.address)
    }
}
