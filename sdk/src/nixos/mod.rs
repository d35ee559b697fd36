//! NixOS resources. [`Image`] is a NixOS disk image built from a host configuration: its identity is the
//! image derivation, so an unchanged configuration plans as a no-op without building anything, and uploads,
//! snapshots and AMIs are named from its store hash.
//!
//! Building (and plan-time evaluation) is done by the Nix provider; without it the image's outputs are
//! `(known after apply)`. Paths are relative to the project root (the directory holding `nix/` and
//! `common/`), so plans are the same on every machine; the Nix provider resolves them and reports a
//! missing file before anything is built or uploaded.

use std::path::PathBuf;

use crate::address::Mode;
use crate::attr::{Attr, Attrs};
use crate::resource::{Handle, Lifecycle, Resource, Validator};
use crate::schema::{Field, OutputField, Schema};
use crate::value::{Digest, ObjectKey, Output, StorePath, Value};

/// The Nix systems images and hosts can be built for (the ones EC2 runs).
pub const NIX_SYSTEMS: [&str; 2] = ["x86_64-linux", "aarch64-linux"];

/// Disk image formats: raw for the EBS direct path, VHD (`vpc`) for the S3 + ImportSnapshot path.
pub const IMAGE_FORMATS: [&str; 2] = ["raw", "vpc"];

/// A NixOS disk image built from a host configuration with `nix/image.nix`.
#[derive(Clone, Debug)]
pub struct Image {
    name: String,
    configuration: PathBuf,
    image_nix: PathBuf,
    format: String,
    system: String,
    lifecycle: Lifecycle,
}

static IMAGE_FIELDS: [Field; 6] = [
    Field::new("configuration").force_new(),
    // The identity: the derivation, worked out at plan time by the Nix provider (no build).
    Field::new("drv_path").force_new(),
    Field::new("format").force_new(),
    Field::new("image_nix").force_new(),
    Field::new("out_path").force_new(),
    Field::new("system").force_new(),
];

static IMAGE_OUTPUTS: [OutputField; 4] =
    [OutputField::new("boot_mode"), OutputField::new("file"), OutputField::new("identity"), OutputField::new("label")];

/// The schema of [`Image`].
pub static IMAGE: Schema = Schema {
    kind: "nixos_image",
    mode: Mode::Managed,
    fields: &IMAGE_FIELDS,
    outputs: &IMAGE_OUTPUTS,
    id: Some("drv_path"),
    predict: predict_image,
    open_outputs: false,
};

/// The identity is the store path's hash, known as soon as the derivation is.
fn predict_image(inputs: &Attrs) -> Attrs {
    inputs
        .get("out_path")
        .and_then(Attr::as_str)
        .and_then(store_hash)
        .map(|hash| Attrs::from([("identity".to_owned(), Attr::str(hash))]))
        .unwrap_or_default()
}

/// The hash part of a store path (`/nix/store/<hash>-<name>`).
pub(crate) fn store_hash(path: &str) -> Option<&str> {
    path.strip_prefix("/nix/store/").and_then(|rest| rest.split('-').next()).filter(|h| h.len() == 32)
}

impl Image {
    /// An image of the host configuration at `configuration` (a NixOS module file), raw, for x86_64-linux,
    /// built by `nix/image.nix` next to the crate.
    pub fn new(name: impl Into<String>, configuration: impl Into<PathBuf>) -> Self {
        Image {
            name: name.into(),
            configuration: configuration.into(),
            image_nix: PathBuf::from("nix/image.nix"),
            format: "raw".into(),
            system: "x86_64-linux".into(),
            lifecycle: Lifecycle::default(),
        }
    }

    /// `raw` (default; EBS direct) or `vpc` (VHD; S3 + ImportSnapshot).
    pub fn format(mut self, format: impl Into<String>) -> Self {
        self.format = format.into();
        self
    }

    /// The Nix file that builds images (default `nix/image.nix`).
    pub fn image_nix(mut self, path: impl Into<PathBuf>) -> Self {
        self.image_nix = path.into();
        self
    }

    /// The Nix system (`x86_64-linux` by default, or `aarch64-linux`).
    pub fn system(mut self, system: impl Into<String>) -> Self {
        self.system = system.into();
        self
    }
}

impl Resource for Image {
    fn schema() -> &'static Schema {
        &IMAGE
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn inputs(&self) -> Attrs {
        Attrs::from([
            ("configuration".into(), Attr::Str(self.configuration.display().to_string())),
            ("drv_path".into(), Attr::Unknown),
            ("format".into(), Attr::str(&self.format)),
            ("image_nix".into(), Attr::Str(self.image_nix.display().to_string())),
            ("out_path".into(), Attr::Unknown),
            ("system".into(), Attr::str(&self.system)),
        ])
    }

    fn validate(&self, v: &mut Validator<'_>) {
        if !IMAGE_FORMATS.contains(&self.format.as_str()) {
            v.error("format", format!("{:?} is not one of {}", self.format, IMAGE_FORMATS.join(", ")));
        }
        if !NIX_SYSTEMS.contains(&self.system.as_str()) {
            v.error("system", format!("{:?} is not one of {}", self.system, NIX_SYSTEMS.join(", ")));
        }
    }

    crate::aws::lifecycle_methods!();
}

impl Handle<Image> {
    /// The built image file (inside the image's store path).
    pub fn file(&self) -> Output<String> {
        self.attribute("file")
    }

    /// The image's content identity: its store path hash. Changes exactly when the image does.
    pub fn identity(&self) -> Output<Digest> {
        self.attribute("identity")
    }

    /// The image's store path.
    pub fn out_path(&self) -> Output<StorePath> {
        self.attribute("out_path")
    }

    /// An S3 key named after the image's store hash: `<prefix><hash><suffix>`, so a new image is a new object.
    pub fn object_key(&self, prefix: &str, suffix: &str) -> Output<ObjectKey> {
        Output::from_expr(self.identity().expr().clone().prepend(prefix).join(suffix))
    }

    /// A name (for an AMI or a snapshot) made from the image's store hash: `<prefix><hash>`.
    pub fn name_with(&self, prefix: &str) -> Output<String> {
        Output::from_expr(self.identity().expr().clone().prepend(prefix))
    }

    /// `legacy-bios` or `uefi`, from the image's `image-info.json`.
    pub fn boot_mode(&self) -> Output<String> {
        self.attribute("boot_mode")
    }
}

/// A NixOS system (a host's `config.system.build.toplevel`) built from its configuration plus values from
/// Rust, passed to Nix as a JSON file (`PARANIX_VALUES`), never spliced into Nix source.
#[derive(Clone, Debug)]
pub struct System {
    name: String,
    configuration: PathBuf,
    host_nix: PathBuf,
    system: String,
    values: std::collections::BTreeMap<String, Attr>,
    lifecycle: Lifecycle,
}

static SYSTEM_FIELDS: [Field; 6] = [
    Field::new("configuration").force_new(),
    Field::new("drv_path").force_new(),
    Field::new("host_nix").force_new(),
    Field::new("out_path").force_new(),
    Field::new("system").force_new(),
    Field::new("values").force_new(),
];

static SYSTEM_OUTPUTS: [OutputField; 1] = [OutputField::new("toplevel")];

/// The schema of [`System`].
pub static SYSTEM: Schema = Schema {
    kind: "nixos_system",
    mode: Mode::Managed,
    fields: &SYSTEM_FIELDS,
    outputs: &SYSTEM_OUTPUTS,
    id: Some("out_path"),
    predict: predict_system,
    open_outputs: false,
};

/// The toplevel is the derivation's output, known as soon as the derivation is.
fn predict_system(inputs: &Attrs) -> Attrs {
    inputs
        .get("out_path")
        .filter(|p| p.as_str().is_some_and(|p| p.starts_with("/nix/store/")))
        .map(|p| Attrs::from([("toplevel".to_owned(), p.clone())]))
        .unwrap_or_default()
}

impl System {
    /// The system of the host configuration at `configuration`, built by `nix/host.nix`, for x86_64-linux.
    pub fn new(name: impl Into<String>, configuration: impl Into<PathBuf>) -> Self {
        System {
            name: name.into(),
            configuration: configuration.into(),
            host_nix: PathBuf::from("nix/host.nix"),
            system: "x86_64-linux".into(),
            values: std::collections::BTreeMap::new(),
            lifecycle: Lifecycle::default(),
        }
    }

    /// The Nix file that evaluates hosts (default `nix/host.nix`).
    pub fn host_nix(mut self, path: impl Into<PathBuf>) -> Self {
        self.host_nix = path.into();
        self
    }

    /// The Nix system (`x86_64-linux` by default).
    pub fn system(mut self, system: impl Into<String>) -> Self {
        self.system = system.into();
        self
    }

    /// A value for the configuration (a literal or an output such as an instance's address), readable in
    /// Nix as a field of the `PARANIX_VALUES` JSON.
    pub fn value<T: crate::value::IntoAttr>(mut self, name: &str, value: impl Into<Value<T>>) -> Self {
        self.values.insert(name.to_owned(), value.into().to_attr());
        self
    }

    /// A list of strings for the configuration (SSH keys, say).
    pub fn values<T: crate::value::IntoAttr>(mut self, name: &str, values: Vec<Value<T>>) -> Self {
        self.values.insert(name.to_owned(), Attr::List(values.iter().map(Value::to_attr).collect()));
        self
    }
}

impl Resource for System {
    fn schema() -> &'static Schema {
        &SYSTEM
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn inputs(&self) -> Attrs {
        Attrs::from([
            ("configuration".into(), Attr::Str(self.configuration.display().to_string())),
            ("drv_path".into(), Attr::Unknown),
            ("host_nix".into(), Attr::Str(self.host_nix.display().to_string())),
            ("out_path".into(), Attr::Unknown),
            ("system".into(), Attr::str(&self.system)),
            ("values".into(), Attr::Map(self.values.clone())),
        ])
    }

    fn validate(&self, v: &mut Validator<'_>) {
        if !NIX_SYSTEMS.contains(&self.system.as_str()) {
            v.error("system", format!("{:?} is not one of {}", self.system, NIX_SYSTEMS.join(", ")));
        }
    }

    crate::aws::lifecycle_methods!();
}

impl Handle<System> {
    /// The system's toplevel store path (known at plan time once its derivation is).
    pub fn toplevel(&self) -> Output<StorePath> {
        self.attribute("toplevel")
    }
}

pub mod deploy;
pub(crate) mod provider;
pub mod ssh;

pub use deploy::{Deployer, Deployment, HealthCheck};

pub use provider::{INSTALL_NIX, ImageBuilder};
