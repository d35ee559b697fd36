//! Typed references: [`Output<T>`] (a value another resource will produce) and [`Value<T>`] (a literal or an
//! output), plus the identifier types that keep wiring honest.
//!
//! A field that takes `impl Into<Value<ImageId>>` accepts `"ami-0abc"` or `image.id()`, and rejects
//! `bucket.arn()` at compile time:
//!
//! ```compile_fail
//! use paranix::prelude::*;
//! let mut stack = Stack::new("demo");
//! let bucket = stack.add(s3::Bucket::new("images").bucket("demo-images"));
//! // an ARN is not an AMI id: this does not compile
//! stack.add(ec2::Instance::new("web").ami(bucket.arn()));
//! ```

use std::fmt;
use std::marker::PhantomData;

use crate::address::Address;
use crate::attr::{Attr, Expr};

/// A value of type `T` that another resource produces, known once that resource exists.
///
/// Using an output in a field adds a dependency edge from the using resource to the producing one.
pub struct Output<T> {
    expr: Expr,
    _type: PhantomData<fn() -> T>,
}

impl<T> Output<T> {
    #[doc(hidden)]
    pub fn from_expr(expr: Expr) -> Self {
        Output { expr, _type: PhantomData }
    }

    /// The output `attribute` of the resource at `address`. Resource handles provide typed shortcuts
    /// (`bucket.arn()`); this is for kinds defined outside paranix.
    pub fn of(address: &Address, attribute: &str) -> Self {
        Output::from_expr(Expr::reference(address.clone(), attribute))
    }

    /// The underlying expression.
    pub fn expr(&self) -> &Expr {
        &self.expr
    }
}

impl<T: Textual> Output<T> {
    /// The value followed by `suffix`, e.g. `images.arn().join("/*")` for every object in a bucket.
    pub fn join(&self, suffix: &str) -> Output<T> {
        Output::from_expr(self.expr.clone().join(suffix))
    }
}

impl<T> Clone for Output<T> {
    fn clone(&self) -> Self {
        Output::from_expr(self.expr.clone())
    }
}

impl<T> fmt::Debug for Output<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Output({})", self.expr)
    }
}

impl<T> fmt::Display for Output<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.expr, f)
    }
}

/// A literal `T` or an [`Output<T>`]: what typed builder fields accept.
pub enum Value<T> {
    /// Known now.
    Known(T),
    /// Known once another resource exists.
    Output(Output<T>),
}

impl<T: Clone> Clone for Value<T> {
    fn clone(&self) -> Self {
        match self {
            Value::Known(v) => Value::Known(v.clone()),
            Value::Output(o) => Value::Output(o.clone()),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Value<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Known(v) => v.fmt(f),
            Value::Output(o) => o.fmt(f),
        }
    }
}

impl<T> From<Output<T>> for Value<T> {
    fn from(o: Output<T>) -> Self {
        Value::Output(o)
    }
}

impl<T> From<&Output<T>> for Value<T> {
    fn from(o: &Output<T>) -> Self {
        Value::Output(o.clone())
    }
}

impl<T: IntoAttr> Value<T> {
    /// The dynamic form: the literal's attribute, or an unresolved reference.
    pub fn to_attr(&self) -> Attr {
        match self {
            Value::Known(v) => v.to_attr(),
            Value::Output(o) => Attr::Ref(o.expr.clone()),
        }
    }

    /// The literal, if known now.
    pub fn known(&self) -> Option<&T> {
        match self {
            Value::Known(v) => Some(v),
            Value::Output(_) => None,
        }
    }
}

/// Types that have a dynamic [`Attr`] form.
pub trait IntoAttr {
    /// The attribute value.
    fn to_attr(&self) -> Attr;
}

/// Marker for text-valued types, which can be extended with [`Output::join`].
pub trait Textual {}

impl IntoAttr for String {
    fn to_attr(&self) -> Attr {
        Attr::Str(self.clone())
    }
}
impl Textual for String {}

impl From<String> for Value<String> {
    fn from(s: String) -> Self {
        Value::Known(s)
    }
}

impl From<&str> for Value<String> {
    fn from(s: &str) -> Self {
        Value::Known(s.to_owned())
    }
}

impl IntoAttr for i64 {
    fn to_attr(&self) -> Attr {
        Attr::Int(*self)
    }
}

impl From<i64> for Value<i64> {
    fn from(i: i64) -> Self {
        Value::Known(i)
    }
}

impl IntoAttr for bool {
    fn to_attr(&self) -> Attr {
        Attr::Bool(*self)
    }
}

impl From<bool> for Value<bool> {
    fn from(b: bool) -> Self {
        Value::Known(b)
    }
}

/// A value that must never be printed: `Debug` shows `<sensitive>` (a private key held by a builder).
#[derive(Clone)]
pub(crate) struct Redacted<T>(pub(crate) T);

impl<T> fmt::Debug for Redacted<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<sensitive>")
    }
}

macro_rules! text_types {
    ($($(#[$doc:meta])* $name:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            /// Wraps a literal value.
            pub fn new(value: impl Into<String>) -> Self {
                $name(value.into())
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl IntoAttr for $name {
            fn to_attr(&self) -> Attr {
                Attr::Str(self.0.clone())
            }
        }

        impl Textual for $name {}

        impl crate::__private::Wire<$name> for $name {
            fn wire(self) -> Value<$name> {
                Value::Known(self)
            }
        }

        impl From<$name> for Value<$name> {
            fn from(v: $name) -> Self {
                Value::Known(v)
            }
        }

        impl From<&str> for Value<$name> {
            fn from(s: &str) -> Self {
                Value::Known($name(s.to_owned()))
            }
        }

        impl From<String> for Value<$name> {
            fn from(s: String) -> Self {
                Value::Known($name(s))
            }
        }
    )*};
}

text_types! {
    /// An Amazon Resource Name (`arn:aws:s3:::images`), or an ARN pattern (`arn:aws:s3:::images/*`).
    Arn;
    /// An S3 bucket name.
    BucketName;
    /// An S3 object key.
    ObjectKey;
    /// An IAM role name.
    RoleName;
    /// An EBS snapshot id (`snap-...`).
    SnapshotId;
    /// An AMI id (`ami-...`).
    ImageId;
    /// An EC2 key pair name.
    KeyName;
    /// An EC2 security group id (`sg-...`).
    SecurityGroupId;
    /// An EC2 instance id (`i-...`).
    InstanceId;
    /// An IP address or DNS name a host is reached at.
    HostAddress;
    /// A Nix store path (`/nix/store/<hash>-<name>`).
    StorePath;
    /// An OpenSSH public key line (`ssh-ed25519 AAAA... comment`).
    PublicKey;
    /// A hex or base64 content digest.
    Digest;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_render_as_interpolations_and_join_text() {
        let arn: Output<Arn> = Output::of(&Address::managed("aws_s3_bucket", "images"), "arn");
        assert_eq!(arn.join("/*").to_string(), "${aws_s3_bucket.images.arn}/*");
        let v: Value<Arn> = arn.into();
        assert!(matches!(v.to_attr(), Attr::Ref(_)));
        let lit: Value<ImageId> = "ami-1".into();
        assert_eq!(lit.to_attr(), Attr::str("ami-1"));
    }
}
