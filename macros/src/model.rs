//! Checking `#[host]`'s arguments and item, and the validated host definition codegen works from. Every
//! problem becomes a spanned error that names what is wrong and lists the valid choices; all of them are
//! reported at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use proc_macro2::Span;
use syn::{Ident, Lit};

use crate::args::{self, Arg, ArgValue, OptionValue};
use crate::catalog;

/// Where the macro runs: the project root configuration paths are relative to.
pub(crate) struct Env {
    /// The Cargo workspace root holding the source file (or its crate root outside a workspace); `None`
    /// when the compiler tells us neither.
    pub(crate) root: Option<PathBuf>,
}

impl Env {
    /// The environment of the current macro call: the project root is found from the source file the
    /// attribute is in, else from `CARGO_MANIFEST_DIR`.
    pub(crate) fn from_compiler() -> Env {
        let source_dir = proc_macro::Span::call_site()
            .local_file()
            .and_then(|file| std::fs::canonicalize(file).ok())
            .and_then(|file| file.parent().map(Path::to_path_buf));
        let start = source_dir.or_else(|| std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from));
        Env { root: start.map(|dir| project_root(&dir)) }
    }
}

/// The nearest ancestor of `start` whose `Cargo.toml` declares a `[workspace]` (the directory `cargo run`
/// runs in), else the nearest one with a `Cargo.toml`, else `start`.
pub(crate) fn project_root(start: &Path) -> PathBuf {
    let mut crate_root = None;
    for dir in start.ancestors() {
        let Ok(manifest) = std::fs::read_to_string(dir.join("Cargo.toml")) else { continue };
        if manifest.lines().any(|line| line.trim() == "[workspace]") {
            return dir.to_path_buf();
        }
        crate_root.get_or_insert_with(|| dir.to_path_buf());
    }
    crate_root.unwrap_or_else(|| start.to_path_buf())
}

/// The arguments `#[host]` takes.
const KEYS: [&str; 8] =
    ["configuration", "health_checks", "host_key", "instance_type", "name", "nixos", "root_volume", "tags"];

/// Host key policies.
const HOST_KEY_POLICIES: [&str; 3] = ["console", "pinned", "trust_on_first_use"];

/// The instance outputs a NixOS option can take.
const INSTANCE_OUTPUTS: [&str; 4] = ["instance_id", "private_ip", "public_dns", "public_ip"];

/// The fields a host struct must have, with their types and what they are for.
const REQUIRED_FIELDS: [(&str, &str, &str); 3] = [
    ("ami", "Output<ImageId>", "the AMI the instance boots"),
    ("key_name", "Output<KeyName>", "the EC2 key pair for the first login"),
    ("security_groups", "Vec<Output<SecurityGroupId>>", "the instance's security groups"),
];

/// How the deploy verifies the host key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HostKey {
    Console,
    Pinned,
    TrustOnFirstUse,
}

/// A health check.
pub(crate) enum Check {
    Http { port: u16, path: String },
    Command(Vec<String>),
}

/// A NixOS option's value.
pub(crate) enum OptValue {
    Str(String),
    Int(i64),
    Bool(bool),
    /// One of [`INSTANCE_OUTPUTS`].
    Instance(&'static str),
    /// A field of the struct.
    Field(Ident),
}

/// A struct field with a role.
pub(crate) struct RoleField {
    pub(crate) ident: Ident,
    /// The span of the field's type: type errors point there.
    pub(crate) ty_span: Span,
}

/// A checked host.
pub(crate) struct HostDef {
    pub(crate) ident: Ident,
    pub(crate) name: String,
    pub(crate) configuration: String,
    pub(crate) instance_type: String,
    pub(crate) root_volume: Option<(i64, String)>,
    pub(crate) host_key: HostKey,
    pub(crate) checks: Vec<Check>,
    pub(crate) options: Vec<(Vec<String>, OptValue)>,
    pub(crate) tags: Vec<(String, String)>,
    pub(crate) ami: RoleField,
    pub(crate) key_name: RoleField,
    pub(crate) security_groups: RoleField,
    pub(crate) private_key: Option<RoleField>,
    pub(crate) host_key_field: Option<RoleField>,
}

/// Errors collected while checking.
#[derive(Default)]
struct Errors(Vec<syn::Error>);

impl Errors {
    fn push(&mut self, span: Span, message: impl std::fmt::Display) {
        self.0.push(syn::Error::new(span, message));
    }

    fn add(&mut self, error: syn::Error) {
        self.0.push(error);
    }

    fn finish(self) -> syn::Result<()> {
        let mut errors = self.0.into_iter();
        let Some(mut first) = errors.next() else { return Ok(()) };
        for error in errors {
            first.combine(error);
        }
        Err(first)
    }
}

/// Checks the arguments against the item and builds the host definition.
pub(crate) fn check(args: &[Arg], item: &syn::Item, env: &Env) -> syn::Result<HostDef> {
    let mut errors = Errors::default();
    let strukt = match item {
        syn::Item::Struct(s) => s,
        other => {
            return Err(syn::Error::new_spanned(
                item_keyword(other),
                "#[host] goes on a struct whose fields are the host's references: \
                 `ami: Output<ImageId>`, `key_name: Output<KeyName>`, `security_groups: Vec<Output<SecurityGroupId>>`",
            ));
        }
    };
    if !strukt.generics.params.is_empty() {
        errors.push(strukt.generics.params[0].ident_span(), "a host struct cannot be generic");
    }
    let fields = struct_fields(strukt, &mut errors);

    let mut seen: HashMap<String, Span> = HashMap::new();
    let mut name = None;
    let mut configuration = None;
    let mut instance_type = None;
    let mut root_volume = None;
    let mut host_key = HostKey::Console;
    let mut host_key_span = None;
    let mut checks = Vec::new();
    let mut options = Vec::new();
    let mut tags = Vec::new();
    let mut antivirus = None;

    for arg in args {
        let key = arg.key.to_string();
        if !KEYS.contains(&key.as_str()) {
            errors.push(arg.key.span(), unknown("argument", &key, &KEYS));
            continue;
        }
        if seen.insert(key.clone(), arg.key.span()).is_some() {
            errors.push(arg.key.span(), format!("duplicate argument `{key}`: each argument is given once"));
            continue;
        }
        match key.as_str() {
            "name" => name = string_value(arg, &mut errors).and_then(|(n, span)| check_name(n, span, &mut errors)),
            "configuration" => {
                configuration = string_value(arg, &mut errors)
                    .and_then(|(path, span)| check_configuration(&path, span, env, &mut errors).then_some(path));
            }
            "instance_type" => {
                instance_type = string_value(arg, &mut errors).and_then(|(t, span)| match check_instance_type(&t) {
                    Ok(()) => Some(t),
                    Err(message) => {
                        errors.push(span, message);
                        None
                    }
                });
            }
            "root_volume" => root_volume = group(arg, &mut errors).and_then(|g| check_root_volume(g, &mut errors)),
            "host_key" => match &arg.value {
                ArgValue::Ident(ident) => {
                    host_key_span = Some(ident.span());
                    match ident.to_string().as_str() {
                        "console" => host_key = HostKey::Console,
                        "pinned" => host_key = HostKey::Pinned,
                        "trust_on_first_use" => host_key = HostKey::TrustOnFirstUse,
                        other => errors.push(ident.span(), unknown("host key policy", other, &HOST_KEY_POLICIES)),
                    }
                }
                other => errors
                    .push(other.span(), format!("expected a host key policy: one of {}", HOST_KEY_POLICIES.join(", "))),
            },
            "health_checks" => {
                if let Some(content) = group(arg, &mut errors) {
                    checks = check_health_checks(content, &mut errors);
                }
            }
            "nixos" => {
                if let Some(content) = group(arg, &mut errors) {
                    options = check_options(content, &fields, &mut antivirus, &mut errors);
                }
            }
            "tags" => {
                if let Some(content) = group(arg, &mut errors) {
                    tags = check_tags(content, &mut errors);
                }
            }
            _ => unreachable!("every key in KEYS is handled"),
        }
    }

    if let (Some(span), Some(instance_type)) = (antivirus, &instance_type)
        && let Some(mib) = catalog::small_instance_memory_mib(instance_type)
    {
        errors.push(
            span,
            format!(
                "{instance_type} has {mib} MiB of memory: the ClamAV daemon holds its signatures in over 1 GiB and \
                 would be killed for lack of memory at every switch, so every deploy would roll back; pick an \
                 instance type with 4 GiB (t3.medium) or more, or leave `paranix.antivirus.enable` off"
            ),
        );
    }

    let call_site = Span::call_site();
    for required in ["configuration", "instance_type"] {
        if !seen.contains_key(required) {
            errors.push(call_site, format!("missing argument `{required}`: {}", describe(required)));
        }
    }

    // The struct's role fields.
    let role = |name: &str| {
        fields.iter().find(|f| f.ident == name).map(|f| RoleField { ident: f.ident.clone(), ty_span: f.ty_span })
    };
    for (field, ty, what) in REQUIRED_FIELDS {
        if role(field).is_none() {
            errors.push(
                strukt.ident.span(),
                format!(
                    "host `{}` has no field `{field}: {ty}` ({what}); a host struct has the fields ami, key_name, \
                     security_groups, and optionally private_key and host_key",
                    strukt.ident
                ),
            );
        }
    }
    let host_key_field = role("host_key");
    match (&host_key_field, host_key) {
        (None, HostKey::Pinned) => errors.push(
            host_key_span.unwrap_or(call_site),
            "`host_key = pinned` needs a field `host_key: Output<PublicKey>` holding the key to pin",
        ),
        (Some(field), policy) if policy != HostKey::Pinned => errors.push(
            field.ident.span(),
            "the field `host_key` is the key to pin: use it with `host_key = pinned` (or rename the field)",
        ),
        _ => {}
    }

    errors.finish()?;
    let (Some(configuration), Some(instance_type), Some(ami), Some(key_name), Some(security_groups)) =
        (configuration, instance_type, role("ami"), role("key_name"), role("security_groups"))
    else {
        unreachable!("a missing part was reported as an error above");
    };
    Ok(HostDef {
        ident: strukt.ident.clone(),
        name: name.unwrap_or_else(|| snake_case(&strukt.ident.to_string())),
        configuration,
        instance_type,
        root_volume,
        host_key,
        checks,
        options,
        tags,
        ami,
        key_name,
        security_groups,
        private_key: role("private_key"),
        host_key_field,
    })
}

/// A field of the struct.
struct FieldInfo {
    ident: Ident,
    ty_span: Span,
}

fn struct_fields(strukt: &syn::ItemStruct, errors: &mut Errors) -> Vec<FieldInfo> {
    match &strukt.fields {
        syn::Fields::Named(named) => named
            .named
            .iter()
            .filter_map(|f| {
                let ident = f.ident.clone()?;
                Some(FieldInfo { ident, ty_span: syn::spanned::Spanned::span(&f.ty) })
            })
            .collect(),
        _ => {
            errors.push(
                strukt.ident.span(),
                format!(
                    "host `{}` needs named fields: `ami: Output<ImageId>`, `key_name: Output<KeyName>`, \
                     `security_groups: Vec<Output<SecurityGroupId>>`",
                    strukt.ident
                ),
            );
            Vec::new()
        }
    }
}

/// What a required argument is for.
fn describe(key: &str) -> &'static str {
    match key {
        "configuration" => "the host's NixOS configuration, e.g. `configuration = \"hosts/web.nix\"`",
        "instance_type" => "the EC2 instance type, e.g. `instance_type = \"t3.micro\"`",
        _ => "",
    }
}

fn string_value(arg: &Arg, errors: &mut Errors) -> Option<(String, Span)> {
    match &arg.value {
        ArgValue::Lit(Lit::Str(s)) => Some((s.value(), s.span())),
        other => {
            errors.push(other.span(), format!("expected a string: `{} = \"...\"`", arg.key));
            None
        }
    }
}

fn group<'a>(arg: &'a Arg, errors: &mut Errors) -> Option<&'a proc_macro2::TokenStream> {
    match &arg.value {
        ArgValue::Group(content, _) => Some(content),
        other => {
            errors.push(other.span(), format!("expected `{}(...)`", arg.key));
            None
        }
    }
}

fn check_name(name: String, span: Span, errors: &mut Errors) -> Option<String> {
    let valid_start = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    if !valid_start || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        errors.push(
            span,
            format!("the host name {name:?} must start with a letter or `_` and use letters, digits, `_` and `-`"),
        );
        return None;
    }
    Some(name)
}

fn check_configuration(path: &str, span: Span, env: &Env, errors: &mut Errors) -> bool {
    let relative = Path::new(path);
    if path.is_empty() || relative.is_absolute() {
        errors.push(
            span,
            "the configuration path is relative to the project root (the Cargo workspace root), e.g. \"hosts/web.nix\"",
        );
        return false;
    }
    if !path.ends_with(".nix") {
        errors.push(span, format!("the configuration {path:?} is not a `.nix` file"));
        return false;
    }
    let Some(root) = &env.root else { return true };
    if root.join(relative).is_file() {
        return true;
    }
    let dir = relative.parent().unwrap_or(Path::new(""));
    let mut nix_files: Vec<String> = std::fs::read_dir(root.join(dir))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| name.ends_with(".nix"))
        .map(|name| dir.join(name).display().to_string())
        .collect();
    nix_files.sort();
    let choices = if nix_files.is_empty() {
        format!("no `.nix` files are in {:?}", dir.display().to_string())
    } else {
        format!("`.nix` files there: {}", nix_files.join(", "))
    };
    errors.push(
        span,
        format!(
            "NixOS configuration {path:?} not found (paths are relative to the project root, the Cargo workspace \
             root); {choices}"
        ),
    );
    false
}

fn check_instance_type(instance_type: &str) -> Result<(), String> {
    catalog::check_instance_type(instance_type).map_err(|message| {
        let (family, size) = instance_type.split_once('.').unwrap_or((instance_type, ""));
        let suggestion = if !catalog::INSTANCE_FAMILIES.contains(&family) {
            closest(family, &catalog::INSTANCE_FAMILIES).map(|f| format!("{f}.{size}"))
        } else {
            closest(size, &catalog::INSTANCE_SIZES).map(|s| format!("{family}.{s}"))
        };
        match suggestion {
            Some(s) => format!("unknown EC2 instance type: {message}; did you mean \"{s}\"?"),
            None => format!("unknown EC2 instance type: {message}"),
        }
    })
}

fn check_root_volume(content: &proc_macro2::TokenStream, errors: &mut Errors) -> Option<(i64, String)> {
    const VOLUME_KEYS: [&str; 2] = ["size_gib", "volume_type"];
    let items = match args::parse_group(content) {
        Ok(items) => items,
        Err(e) => {
            errors.add(e);
            return None;
        }
    };
    let mut size = (8, Span::call_site());
    let mut volume_type = ("gp3".to_owned(), Span::call_site());
    let mut seen = Vec::new();
    for item in &items {
        let key = item.key.to_string();
        if !VOLUME_KEYS.contains(&key.as_str()) {
            errors.push(item.key.span(), unknown("root_volume argument", &key, &VOLUME_KEYS));
            continue;
        }
        if seen.contains(&key) {
            errors.push(item.key.span(), format!("duplicate argument `{key}` in root_volume"));
            continue;
        }
        seen.push(key.clone());
        match (key.as_str(), &item.value) {
            ("size_gib", ArgValue::Lit(Lit::Int(n))) => match n.base10_parse::<i64>() {
                Ok(n_gib) => size = (n_gib, n.span()),
                Err(e) => errors.add(e),
            },
            ("volume_type", ArgValue::Lit(Lit::Str(s))) => volume_type = (s.value(), s.span()),
            ("size_gib", other) => errors.push(other.span(), "expected a size in GiB: `size_gib = 40`"),
            (_, other) => {
                let names: Vec<&str> = catalog::ROOT_VOLUME_TYPES.iter().map(|(n, _, _)| *n).collect();
                errors.push(other.span(), format!("expected a volume type, one of {}", names.join(", ")));
            }
        }
    }
    match catalog::check_root_volume(&volume_type.0, size.0) {
        Ok(()) => Some((size.0, volume_type.0)),
        Err((field, message)) => {
            let span = if field == "volume_type" { volume_type.1 } else { size.1 };
            errors.push(span, format!("bad root volume: {message}"));
            None
        }
    }
}

fn check_health_checks(content: &proc_macro2::TokenStream, errors: &mut Errors) -> Vec<Check> {
    const KINDS: [&str; 2] = ["command", "http"];
    let specs = match args::parse_checks(content) {
        Ok(specs) => specs,
        Err(e) => {
            errors.add(e);
            return Vec::new();
        }
    };
    let mut checks = Vec::new();
    for spec in specs {
        match spec.kind.to_string().as_str() {
            "http" => {
                if let Some(check) = check_http(&spec, errors) {
                    checks.push(check);
                }
            }
            "command" => match args::parse_strings(&spec.content) {
                Ok(argv) if argv.first().is_some_and(|a| !a.value().is_empty()) => {
                    checks.push(Check::Command(argv.iter().map(syn::LitStr::value).collect()));
                }
                Ok(_) => errors.push(
                    spec.span,
                    "a command check needs a program: `command(\"systemctl\", \"is-active\", \"nginx\")`",
                ),
                Err(e) => errors.add(e),
            },
            other => errors.push(spec.kind.span(), unknown("health check", other, &KINDS)),
        }
    }
    checks
}

fn check_http(spec: &args::CheckSpec, errors: &mut Errors) -> Option<Check> {
    const HTTP_KEYS: [&str; 2] = ["path", "port"];
    let items = match args::parse_group(&spec.content) {
        Ok(items) => items,
        Err(e) => {
            errors.add(e);
            return None;
        }
    };
    let (mut port, mut path) = (None, "/".to_owned());
    let mut ok = true;
    for item in &items {
        let key = item.key.to_string();
        match (key.as_str(), &item.value) {
            ("port", ArgValue::Lit(Lit::Int(n))) => match n.base10_parse::<u32>() {
                Ok(p) if (1..=65_535).contains(&p) => port = u16::try_from(p).ok(),
                _ => {
                    errors.push(n.span(), format!("port {n} is outside 1..=65535"));
                    ok = false;
                }
            },
            ("path", ArgValue::Lit(Lit::Str(s))) => match catalog::check_http_path(&s.value()) {
                Ok(()) => path = s.value(),
                Err(message) => {
                    errors.push(s.span(), message);
                    ok = false;
                }
            },
            ("path", other) => {
                errors.push(other.span(), "expected an absolute HTTP path: `path = \"/health\"`");
                ok = false;
            }
            ("port", other) => {
                errors.push(other.span(), "expected a port number: `port = 80`");
                ok = false;
            }
            (other, _) => {
                errors.push(item.key.span(), unknown("http check argument", other, &HTTP_KEYS));
                ok = false;
            }
        }
    }
    match port {
        Some(port) if ok => Some(Check::Http { port, path }),
        None if ok => {
            errors.push(spec.span, "an http check needs a port: `http(port = 80, path = \"/\")`");
            None
        }
        _ => None,
    }
}

/// The NixOS option that turns the ClamAV daemon on (common/default.nix), which small instances cannot hold.
const ANTIVIRUS_OPTION: [&str; 3] = ["paranix", "antivirus", "enable"];

/// Checks the `nixos(...)` settings; `antivirus` receives the span of `paranix.antivirus.enable = true`.
fn check_options(
    content: &proc_macro2::TokenStream,
    fields: &[FieldInfo],
    antivirus: &mut Option<Span>,
    errors: &mut Errors,
) -> Vec<(Vec<String>, OptValue)> {
    let settings = match args::parse_options(content) {
        Ok(settings) => settings,
        Err(e) => {
            errors.add(e);
            return Vec::new();
        }
    };
    let mut options: Vec<(Vec<String>, OptValue)> = Vec::new();
    for setting in settings {
        let path = setting.path.segments;
        let name = path.join(".");
        if path.iter().any(String::is_empty) {
            errors.push(setting.path.span, format!("the option path {name:?} has an empty segment"));
            continue;
        }
        if let Some(segment) = path.iter().find(|s| s.starts_with('_') || s.starts_with('$')) {
            errors.push(
                setting.path.span,
                format!(
                    "`{segment}` in `{name}` is not an option name: names starting with `_` are the NixOS module \
                     system's (`_type` makes priorities, `_module` its settings), `$` ones paranix's own"
                ),
            );
            continue;
        }
        if let Some((other, _)) = options.iter().find(|(o, _)| o.starts_with(&path) || path.starts_with(o)) {
            let what =
                if *other == path { "is set twice".to_owned() } else { format!("overlaps `{}`", other.join(".")) };
            errors.push(setting.path.span, format!("the NixOS option `{name}` {what}"));
            continue;
        }
        let value = match setting.value {
            OptionValue::Lit(Lit::Str(s)) => OptValue::Str(s.value()),
            OptionValue::Lit(Lit::Bool(b)) => {
                if b.value && path.iter().map(String::as_str).eq(ANTIVIRUS_OPTION) {
                    *antivirus = Some(setting.path.span);
                }
                OptValue::Bool(b.value)
            }
            OptionValue::Lit(Lit::Int(n)) => match n.base10_parse::<i64>() {
                Ok(n) => OptValue::Int(n),
                Err(e) => {
                    errors.add(e);
                    continue;
                }
            },
            OptionValue::Lit(_) => {
                errors.push(setting.value_span, "a NixOS option value is a string, an integer or a boolean literal");
                continue;
            }
            OptionValue::Ident(ident) => match INSTANCE_OUTPUTS.iter().find(|o| ident == **o) {
                Some(output) => OptValue::Instance(output),
                None => {
                    let hint = if fields.iter().any(|f| f.ident == ident) {
                        format!(" (for the field, write `self.{ident}`)")
                    } else {
                        String::new()
                    };
                    errors.push(
                        ident.span(),
                        format!("{}{hint}", unknown("instance output", &ident.to_string(), &INSTANCE_OUTPUTS)),
                    );
                    continue;
                }
            },
            OptionValue::Field(ident) => {
                if fields.iter().any(|f| f.ident == ident) {
                    OptValue::Field(ident)
                } else {
                    let names: Vec<String> = fields.iter().map(|f| f.ident.to_string()).collect();
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    errors.push(ident.span(), unknown("field", &ident.to_string(), &names));
                    continue;
                }
            }
        };
        options.push((path, value));
    }
    options
}

fn check_tags(content: &proc_macro2::TokenStream, errors: &mut Errors) -> Vec<(String, String)> {
    let specs = match args::parse_tags(content) {
        Ok(specs) => specs,
        Err(e) => {
            errors.add(e);
            return Vec::new();
        }
    };
    let mut tags: Vec<(String, String)> = Vec::new();
    for spec in &specs {
        let key = &spec.key;
        let value = spec.value.value();
        if key == "Name" {
            errors.push(spec.key_span, "the tag `Name` is the host's name, set by #[host]; use `name = \"...\"`");
        } else if let Err(message) = catalog::check_tag(key, &value) {
            errors.push(spec.key_span, message);
        } else if tags.iter().any(|(k, _)| k == key) {
            errors.push(spec.key_span, format!("the tag {key:?} is set twice"));
        } else {
            tags.push((key.clone(), value));
        }
    }
    // `Name` is added to every host instance, besides paranix's own two.
    let most = catalog::MAX_USER_TAGS - 1;
    if tags.len() > most {
        errors.push(
            Span::call_site(),
            format!("{} tags: an instance takes at most {most} besides Name and paranix's own", tags.len()),
        );
    }
    tags
}

/// "unknown {what} `x`; did you mean `y`? valid {what}s: a, b, c".
fn unknown(what: &str, got: &str, valid: &[&str]) -> String {
    match closest(got, valid) {
        Some(near) => format!("unknown {what} `{got}`; did you mean `{near}`? Valid choices: {}", valid.join(", ")),
        None => format!("unknown {what} `{got}`; valid choices: {}", valid.join(", ")),
    }
}

/// The choice closest to `got` by edit distance, if it is close enough to be a typo.
fn closest<'a>(got: &str, choices: &[&'a str]) -> Option<&'a str> {
    choices
        .iter()
        .map(|c| (edit_distance(got, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let current = row[j + 1];
            row[j + 1] = if ca == *cb { previous } else { 1 + previous.min(row[j]).min(row[j + 1]) };
            previous = current;
        }
    }
    row[b.len()]
}

/// `PrinterFacts` -> `printer_facts`.
fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The keyword token of an item (`fn`, `enum`, ...), for the error on a non-struct.
fn item_keyword(item: &syn::Item) -> proc_macro2::TokenStream {
    use quote::ToTokens;
    match item {
        syn::Item::Fn(f) => f.sig.fn_token.to_token_stream(),
        syn::Item::Enum(e) => e.enum_token.to_token_stream(),
        syn::Item::Union(u) => u.union_token.to_token_stream(),
        syn::Item::Trait(t) => t.trait_token.to_token_stream(),
        syn::Item::Impl(i) => i.impl_token.to_token_stream(),
        other => other.to_token_stream(),
    }
}

trait GenericSpan {
    fn ident_span(&self) -> Span;
}

impl GenericSpan for syn::GenericParam {
    fn ident_span(&self) -> Span {
        syn::spanned::Spanned::span(self)
    }
}
