//! The paths `#[host]` expands to (`::paranix::__private::...`), so the expansion never depends on what the
//! user's module imports. Not a public API.

pub use crate::host::{Host, HostKeyPolicy, HostSpec, InstanceOutput};
pub use crate::nixos::HealthCheck;
pub use crate::value::{ImageId, KeyName, Output, PublicKey, SecurityGroupId, Value};

/// A reference the host takes from another resource: an output of the right type, a value, or a literal.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be wired in where the host needs `{T}`",
    label = "this field must hold an `Output<{T}>` (or a `Value<{T}>`)",
    note = "use an output of the right kind: `image.id()` for an `ImageId`, `group.id()` for a `SecurityGroupId`, \
            `key.key_name()` for a `KeyName`, `key.private_key()` for a private key"
)]
pub trait Wire<T> {
    /// The reference as a value.
    fn wire(self) -> Value<T>;
}

impl<T> Wire<T> for Output<T> {
    fn wire(self) -> Value<T> {
        Value::Output(self)
    }
}

impl<T> Wire<T> for Value<T> {
    fn wire(self) -> Value<T> {
        self
    }
}

impl<T> Wire<T> for &Output<T> {
    fn wire(self) -> Value<T> {
        Value::Output(self.clone())
    }
}

impl Wire<String> for String {
    fn wire(self) -> Value<String> {
        Value::Known(self)
    }
}

/// `field` as a `Value<T>`; a field of another type fails to compile with a message naming both types.
pub fn wire<T, W: Wire<T>>(field: W) -> Value<T> {
    field.wire()
}
