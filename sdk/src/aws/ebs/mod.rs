//! Amazon EBS direct APIs: [`Snapshot`], a snapshot written block by block from a local raw disk image
//! (StartSnapshot / PutSnapshotBlock / CompleteSnapshot), the fast path for NixOS images.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::address::Mode;
use crate::attr::{Attr, Attrs};
use crate::aws::{lifecycle_methods, tag_methods, tags_attr, validate};
use crate::resource::{Handle, Lifecycle, Resource, Validator};
use crate::schema::{Field, OutputField, Schema};
use crate::value::{Digest, Output, SnapshotId, Value};

/// An EBS snapshot uploaded from a raw disk image (only non-zero 512 KiB blocks travel).
#[derive(Clone, Debug)]
pub struct Snapshot {
    name: String,
    source: crate::aws::FileSource,
    volume_size_gib: Option<i64>,
    description: Option<String>,
    tags: BTreeMap<String, String>,
    lifecycle: Lifecycle,
}

static SNAPSHOT_FIELDS: [Field; 5] = [
    Field::new("description").force_new(),
    Field::new("source"),
    Field::new("source_identity").force_new(),
    Field::new("tags"),
    Field::new("volume_size_gib").force_new(),
];

static SNAPSHOT_OUTPUTS: [OutputField; 3] =
    [OutputField::new("arn"), OutputField::new("id"), OutputField::new("blocks_written")];

/// The schema of [`Snapshot`].
pub static SNAPSHOT: Schema = Schema {
    kind: "aws_ebs_snapshot",
    mode: Mode::Managed,
    fields: &SNAPSHOT_FIELDS,
    outputs: &SNAPSHOT_OUTPUTS,
    id: Some("id"),
    predict: crate::schema::predict_nothing,
    open_outputs: false,
};

impl Snapshot {
    /// A snapshot with logical name `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Snapshot {
            name: name.into(),
            source: crate::aws::FileSource::default(),
            volume_size_gib: None,
            description: None,
            tags: BTreeMap::new(),
            lifecycle: Lifecycle::default(),
        }
    }

    /// Uploads this raw image file; its identity (size, modification time) is read from metadata now.
    pub fn source_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.source = crate::aws::FileSource::file(path);
        self
    }

    /// Uploads a raw image another resource builds (a `NixosImage`), identified by `identity` (store path).
    pub fn source_output(mut self, path: impl Into<Value<String>>, identity: impl Into<Value<Digest>>) -> Self {
        self.source = crate::aws::FileSource::output(path, identity);
        self
    }

    /// The volume size in GiB (default: the image size rounded up).
    pub fn volume_size_gib(mut self, gib: i64) -> Self {
        self.volume_size_gib = Some(gib);
        self
    }

    /// A description.
    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.description = Some(description.into());
        self
    }

    tag_methods!();
}

impl Resource for Snapshot {
    fn schema() -> &'static Schema {
        &SNAPSHOT
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn inputs(&self) -> Attrs {
        let mut inputs = Attrs::from([
            ("description".into(), self.description.clone().map_or(Attr::Null, Attr::Str)),
            ("tags".into(), tags_attr(&self.tags)),
            ("volume_size_gib".into(), self.volume_size_gib.map_or(Attr::Null, Attr::Int)),
        ]);
        inputs.extend(self.source.inputs());
        inputs
    }

    fn validate(&self, v: &mut Validator<'_>) {
        self.source.validate(v);
        if let Some(size) = self.volume_size_gib
            && !(1..=65_536).contains(&size)
        {
            v.error("volume_size_gib", format!("{size} GiB is outside 1..=65536"));
        }
        v.check("tags", validate::tags(&self.tags));
    }

    lifecycle_methods!();
}

impl Handle<Snapshot> {
    /// The snapshot id.
    pub fn id(&self) -> Output<SnapshotId> {
        self.attribute("id")
    }
}

pub(crate) mod provider;
