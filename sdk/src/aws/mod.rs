//! Typed AWS resources, one module per service, with builders in the style of the AWS SDK they wrap.
//!
//! Each builder is a plain description (no I/O): `s3::Bucket::new("images").versioning(true)`. Adding it to a
//! [`Stack`](crate::stack::Stack) validates it and returns a [`Handle`](crate::resource::Handle) with typed
//! outputs (`images.arn()`), which other builders accept wherever a field takes `impl Into<Value<T>>`.

pub mod ebs;
pub mod ec2;
pub mod iam;
pub mod s3;
pub(crate) mod validate;

use std::collections::BTreeMap;

use crate::attr::Attr;

/// The file an upload reads (an S3 object, an EBS snapshot): a local file, identified now from its metadata,
/// or a file another resource produces, identified by that resource (a Nix image by its store hash).
#[derive(Clone, Debug, Default)]
pub(crate) struct FileSource {
    path: Option<crate::value::Value<String>>,
    identity: Option<crate::value::Value<crate::value::Digest>>,
    /// A local file that could not be read when declared: reported by `validate`.
    error: Option<String>,
}

impl FileSource {
    /// A local file; its identity (size, modification time) is read from its metadata now.
    pub(crate) fn file(path: impl Into<std::path::PathBuf>) -> Self {
        let path = path.into();
        let (identity, error) = match file_identity(&path) {
            Ok(identity) => (Some(crate::value::Value::Known(identity)), None),
            Err(e) => (None, Some(e)),
        };
        FileSource { path: Some(crate::value::Value::Known(path.display().to_string())), identity, error }
    }

    /// A file another resource produces, identified by `identity`.
    pub(crate) fn output(
        path: impl Into<crate::value::Value<String>>,
        identity: impl Into<crate::value::Value<crate::value::Digest>>,
    ) -> Self {
        FileSource { path: Some(path.into()), identity: Some(identity.into()), error: None }
    }

    /// The `source` and `source_identity` inputs.
    pub(crate) fn inputs(&self) -> [(String, Attr); 2] {
        use crate::value::Value;
        [
            ("source".into(), self.path.as_ref().map_or(Attr::Null, Value::to_attr)),
            ("source_identity".into(), self.identity.as_ref().map_or(Attr::Null, Value::to_attr)),
        ]
    }

    /// Reports a missing or unreadable source under the field `source`.
    pub(crate) fn validate(&self, v: &mut crate::resource::Validator<'_>) {
        if self.path.is_none() {
            v.error("source", "required: set `source_file(path)` or `source_output(path, identity)`");
        }
        if let Some(e) = &self.error {
            v.error("source", e.clone());
        }
    }
}

/// A local file's content identity, from its metadata only (size and modification time): cheap at plan time
/// even for a multi-GiB image, and changed by any rewrite of the file.
pub(crate) fn file_identity(path: &std::path::Path) -> Result<crate::value::Digest, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    Ok(crate::value::Digest::new(format!("size:{};mtime:{}", meta.len(), mtime.map_or(0, |d| d.as_nanos()))))
}

/// Tags as an attribute map.
pub(crate) fn tags_attr(tags: &BTreeMap<String, String>) -> Attr {
    Attr::Map(tags.iter().map(|(k, v)| (k.clone(), Attr::str(v))).collect())
}

/// Declares the usual `tag`/`tags` builder methods on a builder with a `tags: BTreeMap<String, String>` field.
macro_rules! tag_methods {
    () => {
        /// Adds a tag. Keys starting with `aws:` or `paranix:` are reserved.
        pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
            self.tags.insert(key.into(), value.into());
            self
        }

        /// Adds several tags.
        pub fn tags<K: Into<String>, V: Into<String>>(mut self, tags: impl IntoIterator<Item = (K, V)>) -> Self {
            self.tags.extend(tags.into_iter().map(|(k, v)| (k.into(), v.into())));
            self
        }
    };
}
pub(crate) use tag_methods;

/// Implements the lifecycle accessors of [`Resource`](crate::resource::Resource) for a builder with a
/// `lifecycle` field.
macro_rules! lifecycle_methods {
    () => {
        fn lifecycle(&self) -> &$crate::resource::Lifecycle {
            &self.lifecycle
        }

        fn lifecycle_mut(&mut self) -> &mut $crate::resource::Lifecycle {
            &mut self.lifecycle
        }
    };
}
pub(crate) use lifecycle_methods;

/// Input limits shared with `paranix-macros` (see the file's header).
#[allow(unreachable_pub, reason = "the file is shared with the macro crate; the SDK re-exports what it publishes")]
pub(crate) mod catalog;
pub mod context;
pub mod limit;

pub use context::{AwsContext, AwsOptions, RequestCounts};

use std::sync::Arc;

use crate::provider::Providers;

/// The providers of every AWS resource kind, sharing one [`AwsContext`].
pub fn providers(ctx: Arc<AwsContext>, base: Providers) -> Providers {
    base.register(&["aws_s3_bucket"], Arc::new(s3::provider::BucketProvider(ctx.clone())))
        .register(&["aws_s3_object"], Arc::new(s3::provider::ObjectProvider(ctx.clone())))
        .register(&["aws_iam_role"], Arc::new(iam::provider::RoleProvider(ctx.clone())))
        .register(&["aws_iam_role_policy"], Arc::new(iam::provider::RolePolicyProvider(ctx.clone())))
        .register(&["aws_key_pair"], Arc::new(ec2::provider::KeyPairProvider(ctx.clone())))
        .register(&["aws_security_group"], Arc::new(ec2::provider::SecurityGroupProvider(ctx.clone())))
        .register(&["aws_instance"], Arc::new(ec2::provider::InstanceProvider(ctx.clone())))
        .register(&["aws_ami"], Arc::new(ec2::provider::ImageProvider(ctx.clone())))
        .register(&["aws_ebs_snapshot_import"], Arc::new(ec2::provider::SnapshotImportProvider(ctx.clone())))
        .register(&["aws_ebs_snapshot"], Arc::new(ebs::provider::SnapshotProvider(ctx)))
}
