//! Amazon S3: [`Bucket`] (private by default) and [`Object`] (a local file uploaded under a key).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::address::Mode;
use crate::attr::{Attr, Attrs};
use crate::aws::{lifecycle_methods, tag_methods, tags_attr, validate};
use crate::resource::{Handle, Lifecycle, Resource, Validator};
use crate::schema::{Field, OutputField, Schema};
use crate::value::{Arn, BucketName, Digest, ObjectKey, Output, Value};

/// Default encryption of new objects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Encryption {
    /// SSE-S3 (`AES256`), the default.
    S3Managed,
    /// SSE-KMS with the given key (or the AWS-managed key when `None`).
    Kms(Option<String>),
}

/// An S3 bucket. Private by default: all four public access block settings on, SSE-S3 default encryption.
///
/// ```
/// use paranix::prelude::*;
/// let mut stack = Stack::new("bootstrap");
/// let state = stack.add(s3::Bucket::new("state").bucket("example-paranix-state").versioning(true).protect());
/// let _arn: Output<Arn> = state.arn();
/// ```
#[derive(Clone, Debug)]
pub struct Bucket {
    name: String,
    bucket: Option<String>,
    versioning: bool,
    block_public_access: bool,
    encryption: Encryption,
    force_destroy: bool,
    tags: BTreeMap<String, String>,
    lifecycle: Lifecycle,
}

static BUCKET_FIELDS: [Field; 6] = [
    Field::new("bucket").force_new(),
    Field::new("encryption"),
    Field::new("force_destroy"),
    Field::new("public_access_block"),
    Field::new("tags"),
    Field::new("versioning"),
];

static BUCKET_OUTPUTS: [OutputField; 2] = [OutputField::new("arn"), OutputField::new("region")];

/// The schema of [`Bucket`].
pub static BUCKET: Schema = Schema {
    kind: "aws_s3_bucket",
    mode: Mode::Managed,
    fields: &BUCKET_FIELDS,
    outputs: &BUCKET_OUTPUTS,
    id: Some("bucket"),
    predict: predict_bucket,
    open_outputs: false,
};

fn predict_bucket(inputs: &Attrs) -> Attrs {
    inputs
        .get("bucket")
        .and_then(Attr::as_str)
        .map(|b| Attrs::from([("arn".to_owned(), Attr::str(format!("arn:aws:s3:::{b}")))]))
        .unwrap_or_default()
}

impl Bucket {
    /// A bucket with logical name `name`; its S3 name defaults to `name` (set it with [`Bucket::bucket`]).
    pub fn new(name: impl Into<String>) -> Self {
        Bucket {
            name: name.into(),
            bucket: None,
            versioning: false,
            block_public_access: true,
            encryption: Encryption::S3Managed,
            force_destroy: false,
            tags: BTreeMap::new(),
            lifecycle: Lifecycle::default(),
        }
    }

    /// The bucket's globally unique S3 name. Changing it replaces the bucket.
    pub fn bucket(mut self, bucket: impl Into<String>) -> Self {
        self.bucket = Some(bucket.into());
        self
    }

    /// Keeps every version of every object (recommended for state buckets).
    pub fn versioning(mut self, enabled: bool) -> Self {
        self.versioning = enabled;
        self
    }

    /// Turns the public access block off (it is on by default). Think twice.
    pub fn allow_public_access(mut self) -> Self {
        self.block_public_access = false;
        self
    }

    /// Sets default encryption.
    pub fn encryption(mut self, encryption: Encryption) -> Self {
        self.encryption = encryption;
        self
    }

    /// Lets destroy delete the bucket with its objects (otherwise a non-empty bucket is not deleted).
    pub fn force_destroy(mut self, yes: bool) -> Self {
        self.force_destroy = yes;
        self
    }

    tag_methods!();

    fn bucket_name(&self) -> String {
        self.bucket.clone().unwrap_or_else(|| self.name.clone())
    }
}

impl Resource for Bucket {
    fn schema() -> &'static Schema {
        &BUCKET
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn inputs(&self) -> Attrs {
        let block = Attr::Bool(self.block_public_access);
        let encryption = match &self.encryption {
            Encryption::S3Managed => Attr::Map(BTreeMap::from([("sse_algorithm".into(), Attr::str("AES256"))])),
            Encryption::Kms(key) => Attr::Map(BTreeMap::from([
                ("sse_algorithm".into(), Attr::str("aws:kms")),
                ("kms_key_id".into(), key.clone().map_or(Attr::Null, Attr::Str)),
            ])),
        };
        Attrs::from([
            ("bucket".into(), Attr::Str(self.bucket_name())),
            ("encryption".into(), encryption),
            ("force_destroy".into(), Attr::Bool(self.force_destroy)),
            (
                "public_access_block".into(),
                Attr::Map(BTreeMap::from([
                    ("block_public_acls".into(), block.clone()),
                    ("block_public_policy".into(), block.clone()),
                    ("ignore_public_acls".into(), block.clone()),
                    ("restrict_public_buckets".into(), block),
                ])),
            ),
            ("tags".into(), tags_attr(&self.tags)),
            ("versioning".into(), Attr::Bool(self.versioning)),
        ])
    }

    fn validate(&self, v: &mut Validator<'_>) {
        v.check("bucket", validate::bucket_name(&self.bucket_name()));
        v.check("tags", validate::tags(&self.tags));
    }

    lifecycle_methods!();
}

impl Handle<Bucket> {
    /// The bucket's ARN, `arn:aws:s3:::<bucket>`.
    pub fn arn(&self) -> Output<Arn> {
        self.attribute("arn")
    }

    /// The bucket's S3 name.
    pub fn name(&self) -> Output<BucketName> {
        self.attribute("bucket")
    }
}

/// An object uploaded from a local file (streaming, multipart; never re-uploaded while its content identity
/// is unchanged).
///
/// The content identity is cheap to know at plan time: for a literal path it is the file's size and
/// modification time (read from metadata, not from the content); for a Nix-built file it is its store path.
/// The SHA-256 of the content is computed while uploading and recorded as the output `content_sha256`.
#[derive(Clone, Debug)]
pub struct Object {
    name: String,
    bucket: Option<Value<BucketName>>,
    key: Option<Value<ObjectKey>>,
    source: crate::aws::FileSource,
    content_type: Option<String>,
    tags: BTreeMap<String, String>,
    lifecycle: Lifecycle,
}

static OBJECT_FIELDS: [Field; 6] = [
    Field::new("bucket").force_new(),
    Field::new("content_type"),
    Field::new("key").force_new(),
    Field::new("source"),
    Field::new("source_identity"),
    Field::new("tags"),
];

static OBJECT_OUTPUTS: [OutputField; 3] =
    [OutputField::new("content_sha256"), OutputField::new("size"), OutputField::new("version_id")];

/// The schema of [`Object`].
pub static OBJECT: Schema = Schema {
    kind: "aws_s3_object",
    mode: Mode::Managed,
    fields: &OBJECT_FIELDS,
    outputs: &OBJECT_OUTPUTS,
    id: Some("key"),
    predict: crate::schema::predict_nothing,
    open_outputs: false,
};

impl Object {
    /// An object with logical name `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Object {
            name: name.into(),
            bucket: None,
            key: None,
            source: crate::aws::FileSource::default(),
            content_type: None,
            tags: BTreeMap::new(),
            lifecycle: Lifecycle::default(),
        }
    }

    /// The bucket (usually `images.name()`).
    pub fn bucket(mut self, bucket: impl Into<Value<BucketName>>) -> Self {
        self.bucket = Some(bucket.into());
        self
    }

    /// The object key.
    pub fn key(mut self, key: impl Into<Value<ObjectKey>>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Uploads this local file. Its identity (size and modification time) is taken from its metadata now.
    pub fn source_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.source = crate::aws::FileSource::file(path);
        self
    }

    /// Uploads a file another resource produces (a Nix-built image), identified by `identity` (its store path
    /// or hash), so an unchanged file costs nothing at plan time.
    pub fn source_output(mut self, path: impl Into<Value<String>>, identity: impl Into<Value<Digest>>) -> Self {
        self.source = crate::aws::FileSource::output(path, identity);
        self
    }

    /// The `Content-Type`.
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    tag_methods!();
}

impl Resource for Object {
    fn schema() -> &'static Schema {
        &OBJECT
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn inputs(&self) -> Attrs {
        let mut inputs = Attrs::from([
            ("bucket".into(), self.bucket.as_ref().map_or(Attr::Null, Value::to_attr)),
            ("content_type".into(), self.content_type.clone().map_or(Attr::Null, Attr::Str)),
            ("key".into(), self.key.as_ref().map_or(Attr::Null, Value::to_attr)),
            ("tags".into(), tags_attr(&self.tags)),
        ]);
        inputs.extend(self.source.inputs());
        inputs
    }

    fn validate(&self, v: &mut Validator<'_>) {
        if self.bucket.is_none() {
            v.error("bucket", "required: the bucket to upload to");
        }
        match &self.key {
            None => v.error("key", "required: the object key"),
            Some(Value::Known(k)) if k.as_str().is_empty() || k.as_str().len() > 1024 => {
                v.error("key", "must be 1 to 1024 bytes long");
            }
            _ => {}
        }
        self.source.validate(v);
        v.check("tags", validate::tags(&self.tags));
    }

    lifecycle_methods!();
}

impl Handle<Object> {
    /// The object's key.
    pub fn key(&self) -> Output<ObjectKey> {
        self.attribute("key")
    }

    /// The object's bucket.
    pub fn bucket(&self) -> Output<BucketName> {
        self.attribute("bucket")
    }

    /// The content identity the object was uploaded with (changes when the file does).
    pub fn source_identity(&self) -> Output<Digest> {
        self.attribute("source_identity")
    }

    /// The SHA-256 of the uploaded content, computed while streaming.
    pub fn content_sha256(&self) -> Output<Digest> {
        self.attribute("content_sha256")
    }
}

pub(crate) mod provider;
