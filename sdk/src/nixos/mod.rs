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
    options: Vec<(Vec<String>, Attr)>,
    lifecycle: Lifecycle,
}

// Nothing forces a new system: a changed configuration is an update (a new toplevel built next to the old
// one, which stays in the store), not a destroy.
static SYSTEM_FIELDS: [Field; 6] = [
    Field::new("configuration"),
    Field::new("drv_path"),
    Field::new("host_nix"),
    Field::new("out_path"),
    Field::new("system"),
    Field::new("values"),
];

static SYSTEM_OUTPUTS: [OutputField; 1] = [OutputField::derived("toplevel")];

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
            options: Vec::new(),
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

    /// Sets the NixOS option `path` (`"paranix.services.printerfacts.domain"`) to a value from Rust: a literal
    /// or an output such as an instance's address. The value reaches Nix as JSON data (the `options` field of
    /// `PARANIX_VALUES`, which `nix/eval.nix` merges as a module), never as Nix source text, so no value can
    /// inject Nix code. For option names with dots in one segment, use [`System::option_at`].
    pub fn option<T: crate::value::IntoAttr>(self, path: &str, value: impl Into<Value<T>>) -> Self {
        let segments: Vec<&str> = path.split('.').collect();
        self.option_at(&segments, value)
    }

    /// Sets the NixOS option at `path`, given segment by segment (`["services", "nginx", "virtualHosts",
    /// "example.com", "root"]`). See [`System::option`].
    pub fn option_at<T: crate::value::IntoAttr>(self, path: &[&str], value: impl Into<Value<T>>) -> Self {
        self.option_attr(path, value.into().to_attr())
    }

    /// Sets the NixOS option at `path` to a dynamic value.
    pub(crate) fn option_attr(mut self, path: &[&str], value: Attr) -> Self {
        self.options.push((path.iter().map(|s| (*s).to_owned()).collect(), value));
        self
    }

    /// The options as one nested attribute set (the shape of a NixOS module's `config`).
    fn options_attr(&self) -> Attr {
        let mut root = Attr::Map(std::collections::BTreeMap::new());
        for (path, value) in &self.options {
            let mut node = &mut root;
            for (i, segment) in path.iter().enumerate() {
                let Attr::Map(map) = node else { break };
                if i + 1 == path.len() {
                    map.insert(segment.clone(), value.clone());
                    break;
                }
                node = map.entry(segment.clone()).or_insert_with(|| Attr::Map(std::collections::BTreeMap::new()));
            }
        }
        root
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
            ("values".into(), self.values_attr()),
        ])
    }

    fn validate(&self, v: &mut Validator<'_>) {
        if !NIX_SYSTEMS.contains(&self.system.as_str()) {
            v.error("system", format!("{:?} is not one of {}", self.system, NIX_SYSTEMS.join(", ")));
        }
        if !self.options.is_empty() && self.values.contains_key("options") {
            v.error("values.options", "set both as a value and through `option`; use one");
        }
        for (i, (path, _)) in self.options.iter().enumerate() {
            let name = path.join(".");
            if path.is_empty() || path.iter().any(String::is_empty) {
                v.error(
                    format!("values.options.{name}"),
                    "an option path has no empty segments, like `networking.hostName`",
                );
                continue;
            }
            if let Some(segment) = path.iter().find(|s| s.starts_with('_') || s.starts_with('$')) {
                // `_type`, `_module`, ...: the module system reads these attributes as priorities (mkForce,
                // mkOverride), conditions and module settings, not as option values; `$`-keys are paranix's own
                // markers in state. Data from Rust sets options, nothing else.
                v.error(
                    format!("values.options.{name}"),
                    format!("the segment {segment:?} is not an option name: names starting with `_` or `$` are the module system's (priorities, conditions) or paranix's own"),
                );
                continue;
            }
            // Two settings of one option, or of an option and an attribute inside it, would silently
            // overwrite each other in the JSON: refuse them.
            if let Some((other, _)) = self.options[..i].iter().find(|(o, _)| o.starts_with(path) || path.starts_with(o))
            {
                v.error(
                    format!("values.options.{name}"),
                    format!("conflicts with the option `{}` set before", other.join(".")),
                );
            }
        }
    }

    crate::aws::lifecycle_methods!();
}

impl System {
    /// The values, with the options under `options`.
    fn values_attr(&self) -> Attr {
        let mut values = self.values.clone();
        if !self.options.is_empty() {
            values.insert("options".to_owned(), self.options_attr());
        }
        Attr::Map(values)
    }
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
