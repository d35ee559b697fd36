//! [`ImageBuilder`]: the provider of NixOS images. At plan time it instantiates the image derivation
//! (`nix-instantiate`, no build), so an unchanged configuration plans as a no-op; at apply time it builds it
//! (`nix-store --realise`, kept alive by a GC root) and reads `nix-support/image-info.json`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use async_trait::async_trait;
use tokio::process::Command;

use crate::address::Address;
use crate::attr::{Attr, Attrs};
use crate::error::{Error, ErrorKind, Result};
use crate::provider::{Observed, Provider, ReadRequest, StepContext};
use crate::state::ResourceState;

/// How to install Nix, for messages.
pub const INSTALL_NIX: &str =
    "install Nix (https://nixos.org/download, or Debian's `apt-get install nix-bin`) to build NixOS images";

/// The variable naming the JSON file of values from Rust (read by `nix/eval.nix`).
const VALUES_VARIABLE: &str = "PARANIX_VALUES";
/// `nix/sources.nix`'s override of a pinned source: `PARANIX_SOURCE_<name>=/path`.
const SOURCE_VARIABLE_PREFIX: &str = "PARANIX_SOURCE_";

/// Builds NixOS images with the local Nix.
#[derive(Clone, Debug)]
pub struct ImageBuilder {
    root: PathBuf,
    gc_roots: PathBuf,
    options: Vec<(String, String)>,
    sources: Vec<(String, PathBuf)>,
}

impl ImageBuilder {
    /// A builder resolving images' paths against `root` (the project root, holding `nix/` and `common/`),
    /// keeping GC roots for built images under `gc_roots`.
    pub fn new(root: impl Into<PathBuf>, gc_roots: impl Into<PathBuf>) -> Self {
        ImageBuilder { root: root.into(), gc_roots: gc_roots.into(), options: Vec::new(), sources: Vec::new() }
    }

    /// Passes `--option name value` to every Nix command (e.g. `sandbox false` where builds cannot be
    /// sandboxed).
    pub fn option(mut self, name: &str, value: &str) -> Self {
        self.options.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Evaluates with a local tree instead of the pinned source `name` of `nix/sources.json` (for example
    /// `source("nixpkgs", "/src/nixpkgs")`): the `PARANIX_SOURCE_<name>` escape hatch of `nix/sources.nix`,
    /// set explicitly. The operator's own `PARANIX_SOURCE_*` variables are never passed on: what a plan
    /// evaluates depends on the program, not on the shell it runs in.
    pub fn source(mut self, name: &str, path: impl Into<PathBuf>) -> Self {
        self.sources.push((name.to_owned(), path.into()));
        self
    }

    fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        for (name, value) in &self.options {
            command.args(["--option", name, value]);
        }
        // Hidden inputs of an evaluation: only what this builder sets reaches Nix.
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k == VALUES_VARIABLE || k.starts_with(SOURCE_VARIABLE_PREFIX)) {
                command.env_remove(key);
            }
        }
        for (name, path) in &self.sources {
            command.env(format!("{SOURCE_VARIABLE_PREFIX}{name}"), path);
        }
        command.stdin(Stdio::null()).kill_on_drop(true);
        command
    }

    /// Runs a Nix command, returning its trimmed stdout; `None` when Nix is not installed.
    async fn run(&self, address: &Address, mut command: Command, what: &str) -> Result<Option<String>> {
        let output = match command.output().await {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::provider(address, format!("cannot run {what}: {e}"))),
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
            return Err(Error::provider(
                address,
                format!(
                    "{what} failed ({}):\n{}",
                    output.status,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ),
            ));
        }
        Ok(Some(String::from_utf8_lossy(&output.stdout).trim().to_owned()))
    }

    fn path(&self, address: &Address, inputs: &Attrs, field: &str) -> Result<PathBuf> {
        let relative = inputs
            .get(field)
            .and_then(Attr::as_str)
            .ok_or_else(|| Error::provider(address, format!("input `{field}` is missing")))?;
        let path = self.root.join(relative);
        if !path.exists() {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("{address}: field `{field}`: {} does not exist", path.display()),
            ));
        }
        Ok(path)
    }

    /// `nix-instantiate`: the derivation and its output path; `Ok(None)` without Nix. Images are evaluated
    /// by `image_nix`; systems by `host_nix`, with their values in a JSON file named by `PARANIX_VALUES`.
    async fn instantiate(&self, address: &Address, inputs: &Attrs) -> Result<Option<(String, String)>> {
        let system_kind = address.kind() == "nixos_system";
        let nix_file = self.path(address, inputs, if system_kind { "host_nix" } else { "image_nix" })?;
        let configuration = self.path(address, inputs, "configuration")?;
        let mut command = self.command("nix-instantiate");
        // `--argstr`: a path handed over as an expression (`--arg`) would not parse with spaces in it.
        command.arg(&nix_file).args(["--argstr", "configuration"]).arg(&configuration);
        if !system_kind {
            command.args(["--argstr", "format", inputs.get("format").and_then(Attr::as_str).unwrap_or("raw")]);
        }
        command.args(["--argstr", "system", inputs.get("system").and_then(Attr::as_str).unwrap_or("x86_64-linux")]);
        let _values_file = if system_kind {
            let values = inputs.get("values").cloned().unwrap_or(Attr::Map(Default::default()));
            let file = tempfile_with(&values.to_json().to_string())
                .map_err(|e| Error::provider(address, format!("cannot write the values file: {e}")))?;
            command.env(VALUES_VARIABLE, file.path());
            Some(file)
        } else {
            None
        };
        let Some(drv) = self.run(address, command, "nix-instantiate").await? else { return Ok(None) };
        let drv = drv.lines().last().unwrap_or_default().to_owned();
        let mut query = self.command("nix-store");
        query.args(["--query", "--outputs", &drv]);
        let out = self.run(address, query, "nix-store --query --outputs").await?.unwrap_or_default();
        Ok(Some((drv, out.lines().next().unwrap_or_default().to_owned())))
    }

    fn gc_root(&self, address: &Address) -> PathBuf {
        self.gc_roots.join(address.to_string())
    }
}

/// A temporary file holding `text` (removed when dropped).
fn tempfile_with(text: &str) -> std::io::Result<TempFile> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("paranix-values-{}-{n}.json", std::process::id()));
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
    file.write_all(text.as_bytes())?;
    Ok(TempFile(path))
}

/// A file removed on drop.
struct TempFile(PathBuf);

impl TempFile {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn not_installed(address: &Address) -> Error {
    Error::new(ErrorKind::NoProvider, format!("{address}: `nix-instantiate` is not on PATH: {INSTALL_NIX}"))
}

/// The image file and its metadata, from `<out>/nix-support/image-info.json`.
fn image_info(address: &Address, out: &Path) -> Result<Attrs> {
    let path = out.join("nix-support/image-info.json");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| Error::provider(address, format!("the image has no {}: {e}", path.display())))?;
    let info: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::provider(address, format!("{} is not JSON: {e}", path.display())))?;
    let field = |name: &str| info.get(name).and_then(serde_json::Value::as_str).map(str::to_owned);
    let file = field("file").ok_or_else(|| Error::provider(address, format!("{} names no `file`", path.display())))?;
    let file = if Path::new(&file).is_absolute() { file } else { out.join(file).display().to_string() };
    let identity = super::store_hash(&out.display().to_string()).unwrap_or_default().to_owned();
    Ok(Attrs::from([
        ("boot_mode".to_owned(), field("boot_mode").map_or(Attr::str("legacy-bios"), Attr::Str)),
        ("file".to_owned(), Attr::Str(file)),
        ("identity".to_owned(), Attr::Str(identity)),
        ("label".to_owned(), field("label").map_or(Attr::Null, Attr::Str)),
    ]))
}

/// What NixOS says when it refuses a configuration, from a failed evaluation's output; `None` for other
/// failures (a source that cannot be fetched, a broken Nix installation), which leave the result unknown.
///
/// The texts are the module system's and NixOS' own: `lib/modules.nix` ("The option `…' does not exist",
/// "A definition for option `…' is not of type `…'", "… was accessed but has no value defined"),
/// `lib/options.nix` ("… has conflicting definition values") and
/// `lib/asserts.nix` (`checkAssertWarn`, which NixOS' toplevel calls: `throw "\nFailed assertions:\n- …"`).
fn refusal(output: &str) -> Option<String> {
    let lines: Vec<&str> = output.lines().map(str::trim).collect();
    if let Some(at) = lines.iter().position(|l| l.ends_with("Failed assertions:")) {
        let failed: Vec<&str> = lines[at + 1..].iter().take_while(|l| l.starts_with("- ")).copied().collect();
        return Some(format!("failed assertions:\n{}", failed.join("\n")));
    }
    const MODULE_ERRORS: [&str; 4] = [
        "' does not exist",
        "' was accessed but has no value defined",
        "' has conflicting definition values",
        "' is not of type `",
    ];
    let line = lines.iter().rev().find(|l| l.contains("option `") && MODULE_ERRORS.iter().any(|m| l.contains(m)))?;
    Some(line.trim_start_matches("error:").trim().to_owned())
}

#[async_trait]
impl Provider for ImageBuilder {
    async fn prepare(&self, address: &Address, inputs: &Attrs) -> Result<(Attrs, Option<String>)> {
        let mut prepared = inputs.clone();
        // A system whose values depend on changes in this run is evaluated at apply time.
        if inputs.get("values").is_some_and(|v| !v.is_known()) {
            return Ok((prepared, None));
        }
        match self.instantiate(address, inputs).await {
            Ok(Some((drv, out))) => {
                prepared.insert("drv_path".into(), Attr::Str(drv));
                prepared.insert("out_path".into(), Attr::Str(out));
                Ok((prepared, None))
            }
            Ok(None) => Ok((
                prepared,
                Some(format!("{address} was not evaluated: `nix-instantiate` is not on PATH; {INSTALL_NIX}")),
            )),
            // A missing file is a configuration error; anything else (no network for the pinned sources,
            // say) leaves the image unknown, and the plan says why.
            Err(e) if e.kind() == ErrorKind::InvalidConfig => Err(e),
            Err(e) => {
                let text = e.to_string();
                // NixOS refused the configuration itself (a failed assertion, an unknown option, a value of
                // the wrong type): no later run could build it either, so the plan fails here, before any
                // request.
                if let Some(reason) = refusal(&text) {
                    return Err(Error::new(
                        ErrorKind::InvalidConfig,
                        format!("{address}: NixOS refuses the configuration: {reason}"),
                    ));
                }
                let first = text.lines().rev().find(|l| l.contains("error:")).unwrap_or_default();
                let first = first.trim().trim_start_matches("warning: ").to_owned();
                Ok((prepared, Some(format!("{address} could not be evaluated, so its image is unknown: {first}"))))
            }
        }
    }

    async fn read(&self, _kind: &str, requests: &[ReadRequest<'_>]) -> Result<Vec<Option<Observed>>> {
        // A built image exists while its output path is in the store; reading never builds or hashes.
        Ok(requests
            .iter()
            .map(|r| {
                let out = r.inputs.get("out_path").and_then(Attr::as_str)?;
                Path::new(out).exists().then(|| Observed { inputs: r.inputs.clone(), outputs: r.outputs.clone() })
            })
            .collect())
    }

    async fn create(&self, ctx: &StepContext, inputs: &Attrs) -> Result<Observed> {
        self.build(ctx, inputs).await
    }

    async fn update(&self, ctx: &StepContext, prior: &ResourceState, inputs: &Attrs) -> Result<Observed> {
        if ctx.address.kind() == "nixos_system" {
            // A changed system is built next to the old one and the GC root moves to it; the old system
            // stays in the store (the host may still run it) until Nix collects garbage.
            return self.build(ctx, inputs).await;
        }
        // Every field of an image forces a new one; nothing changes in place.
        Ok(Observed { inputs: inputs.clone(), outputs: prior.outputs.clone() })
    }

    async fn delete(&self, ctx: &StepContext, _prior: &ResourceState) -> Result<()> {
        // The image stays in the store until Nix collects garbage; only paranix's root goes.
        match std::fs::remove_file(self.gc_root(&ctx.address)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::provider(&ctx.address, format!("cannot remove the GC root: {e}"))),
        }
    }
}

impl ImageBuilder {
    /// Evaluates (if the plan could not) and realises the derivation, with a GC root per address.
    async fn build(&self, ctx: &StepContext, inputs: &Attrs) -> Result<Observed> {
        let address = &ctx.address;
        let instantiated;
        let drv = match inputs.get("drv_path").and_then(Attr::as_str) {
            Some(drv) => drv,
            None => {
                // Not known at plan time (its values were not): evaluate now, with every value resolved.
                ctx.progress("evaluating");
                instantiated = self.instantiate(address, inputs).await?.ok_or_else(|| not_installed(address))?;
                &instantiated.0
            }
        };
        std::fs::create_dir_all(&self.gc_roots)
            .map_err(|e| Error::provider(address, format!("cannot create {}: {e}", self.gc_roots.display())))?;
        ctx.progress(format!("building {drv}"));
        let mut build = self.command("nix-store");
        build.args(["--realise", drv, "--add-root"]).arg(self.gc_root(address)).arg("--indirect");
        let out = self.run(address, build, "nix-store --realise").await?.ok_or_else(|| not_installed(address))?;
        let out = PathBuf::from(out.lines().last().unwrap_or_default());
        // The GC root is a symlink to the output; the output itself is what image-info describes.
        let out = std::fs::canonicalize(&out).unwrap_or(out);
        if address.kind() == "nixos_system" {
            let mut recorded = inputs.clone();
            recorded.insert("drv_path".into(), Attr::str(drv));
            recorded.insert("out_path".into(), Attr::Str(out.display().to_string()));
            let outputs = Attrs::from([("toplevel".to_owned(), Attr::Str(out.display().to_string()))]);
            return Ok(Observed { inputs: recorded, outputs });
        }
        Ok(Observed { inputs: inputs.clone(), outputs: image_info(address, &out)? })
    }
}

#[cfg(test)]
mod tests {
    use super::refusal;

    // The outputs below are what `nix-instantiate` 2.x prints for each case with nixpkgs' lib/.

    #[test]
    fn failed_assertions_are_a_refusal_with_every_message() {
        let output = "nix-instantiate failed (exit status: 1):\nerror:\n       Failed assertions:\n       - paranix: one\n       - two";
        assert_eq!(refusal(output).as_deref(), Some("failed assertions:\n- paranix: one\n- two"));
    }

    #[test]
    fn module_system_errors_are_a_refusal() {
        let wrong_type = "error: A definition for option `a' is not of type `signed integer'. Definition values:\n       - In `<unknown-file>': \"x\"\n(use '--show-trace' to show detailed location information)";
        assert!(refusal(wrong_type).is_some_and(|r| r.starts_with("A definition for option `a' is not of type")));
        let unknown = "error: The option `b' does not exist. Definition values:\n       - In `<unknown-file>': 1\n\n       Did you mean `a'?";
        assert!(refusal(unknown).is_some_and(|r| r.starts_with("The option `b' does not exist")));
    }

    #[test]
    fn other_failures_are_not_a_refusal() {
        for output in [
            "error: unable to download 'https://github.com/NixOS/nixpkgs/archive/x.tar.gz': Could not resolve host",
            "error: path '/nix/store/abc-source/nixos' does not exist",
            "error: attribute 'printerfacts' missing",
        ] {
            assert_eq!(refusal(output), None, "{output}");
        }
    }
}
