//! paranix's NixOS modules evaluated with the real NixOS module system: nixpkgs' `lib.evalModules` over
//! `common/`, `nix/modules.nix` and the printerfacts host, next to declarations of the nixpkgs options they use
//! and what nixpkgs' modules do with them, written from the NixOS 26.05 sources (`tests/nix/modules/`).
//!
//! The module system needs nixpkgs' `lib/` only. It is found, in this order, at `PARANIX_NIXPKGS_LIB` (`.ci/run`
//! points it at a pinned copy), at `<nixpkgs/lib>` in `NIX_PATH`, or in the pinned nixpkgs of `nix/sources.json`
//! when that is already in the Nix store. A run that finds none fails and says how to provide one: these tests
//! never skip.
//!
//! The options the deployed systems get are the ones the Rust code passes: the printerfacts example's stacks are
//! built, the `nixos_system`'s values taken from them, and their references (the key pair's public key, the
//! instance's address) filled in as apply would.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use paranix::address::Address;
use paranix::attr::Attr;
use paranix::host::HostSpec;
use paranix::prelude::*;
use serde_json::{Value, json};

use crate::printerfacts_stacks::{self as stacks, ImageSource};

/// The deploy key pair's public half, as the key pair resource reports it after apply.
const DEPLOY_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGGAnHvDOf0i+aTNe0fWIk6ALm/QE+rdE5q5wqLq0Hxk deploy";
/// A second root key (`HostSpec::root_key`).
const BREAK_GLASS_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB6M2lKV0Fd5I0VnjRZ6mXI3hQWbvBoSXHHpXlRUvN5P break-glass";
/// A staff account's key.
const ALICE_KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMjMZEVrNjSKUUZXtB4AoN6oSSCMxnpts45zOEqlI5qT alice";
/// The instance's public address after apply.
const PUBLIC_IP: &str = "203.0.113.7";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate lives inside the repository").to_path_buf()
}

/// `nix-instantiate --eval` of `expr`; `None` when it fails.
fn nix_eval(expr: &str) -> Option<String> {
    let out = Command::new("nix-instantiate").args(["--eval", "--expr", expr]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().trim_matches('"').to_owned())
}

/// nixpkgs' `lib/` directory (see the module docs for where it is looked for). Panics with how to provide it.
fn nixpkgs_lib() -> &'static Path {
    static LIB: OnceLock<PathBuf> = OnceLock::new();
    LIB.get_or_init(|| {
        assert!(
            Command::new("nix-instantiate").arg("--version").output().is_ok_and(|o| o.status.success()),
            "the module-logic tests need `nix-instantiate` (Debian: `apt-get install nix-bin`)"
        );
        if let Some(dir) = std::env::var_os("PARANIX_NIXPKGS_LIB") {
            let dir = PathBuf::from(dir);
            assert!(
                dir.join("default.nix").is_file(),
                "PARANIX_NIXPKGS_LIB={} is not nixpkgs' lib/ directory (no default.nix in it)",
                dir.display()
            );
            return dir;
        }
        let in_path = "let e = builtins.filter (e: e.prefix == \"nixpkgs\") builtins.nixPath; in \
                       if e == [ ] then \"\" else toString (builtins.head e).path + \"/lib\"";
        if let Some(dir) = nix_eval(in_path).map(PathBuf::from).filter(|d| d.join("default.nix").is_file()) {
            return dir;
        }
        let pinned = format!("\"${{(import {}/nix/sources.nix).nixpkgs}}/lib\"", repo_root().display());
        if let Some(dir) = nix_eval(&pinned).map(PathBuf::from).filter(|d| d.join("default.nix").is_file()) {
            return dir;
        }
        panic!(
            "the module-logic tests need nixpkgs' lib/ (the NixOS module system) and found none: set \
             PARANIX_NIXPKGS_LIB=/path/to/nixpkgs/lib (a nixpkgs checkout's lib/, or the copy .ci/run uses), or put \
             nixpkgs in NIX_PATH (`-I nixpkgs=/path/to/nixpkgs`)"
        )
    })
}

/// What a scenario evaluates: the printerfacts host by default, with the options of `options` (the JSON paranix
/// writes for a system), as the image when `image`, plus `extra` configuration.
#[derive(Default)]
struct Scenario {
    configuration: Option<PathBuf>,
    options: Option<Value>,
    image: bool,
    system: Option<&'static str>,
    extra: Option<Value>,
}

impl Scenario {
    /// Evaluates with `tests/nix/modules/scenario.nix`; returns the report (see `eval.nix`).
    fn evaluate(&self) -> Value {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = repo_root();
        let configuration = self.configuration.clone().unwrap_or_else(|| root.join("examples/printerfacts/host.nix"));
        let mut command = Command::new("nix-instantiate");
        command
            // Read-write: nix/printerfacts.nix's source filter copies the sources into the store.
            .args(["--eval", "--strict", "--json", "--read-write-mode"])
            .arg(root.join("tests/nix/modules/scenario.nix"))
            .arg("--argstr")
            .arg("libPath")
            .arg(nixpkgs_lib())
            .arg("--argstr")
            .arg("configuration")
            .arg(&configuration);
        for (name, value) in [("optionsFile", &self.options), ("extraFile", &self.extra)] {
            if let Some(value) = value {
                let file = dir.path().join(format!("{name}.json"));
                std::fs::write(&file, value.to_string()).expect("write the JSON file");
                command.args(["--argstr", name]).arg(&file);
            }
        }
        if self.image {
            command.args(["--argstr", "image", "1"]);
        }
        if let Some(system) = self.system {
            command.args(["--argstr", "system", system]);
        }
        let out = command.output().expect("run nix-instantiate");
        assert!(
            out.status.success(),
            "evaluating {} failed:\n{}",
            configuration.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("the report is JSON")
    }

    /// Evaluates a scenario the module system must refuse; returns its error output.
    fn refused(&self) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = repo_root();
        let mut command = Command::new("nix-instantiate");
        command
            .args(["--eval", "--strict", "--json", "--read-write-mode"])
            .arg(root.join("tests/nix/modules/scenario.nix"))
            .args(["--argstr", "libPath"])
            .arg(nixpkgs_lib())
            .args(["--argstr", "configuration"])
            .arg(root.join("examples/printerfacts/host.nix"));
        for (name, value) in [("optionsFile", &self.options), ("extraFile", &self.extra)] {
            if let Some(value) = value {
                let file = dir.path().join(format!("{name}.json"));
                std::fs::write(&file, value.to_string()).expect("write the JSON file");
                command.args(["--argstr", name]).arg(&file);
            }
        }
        let out = command.output().expect("run nix-instantiate");
        assert!(!out.status.success(), "the module system accepted it: {}", String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// The deployed printerfacts system with `adjust` applied in Rust and `extra` merged as one more module.
fn deployed_with(adjust: impl FnOnce(HostSpec) -> HostSpec, extra: Value) -> Value {
    let (values, system) = printerfacts_system(adjust);
    Scenario { options: Some(values), system: Some(system), extra: Some(extra), ..Scenario::default() }.evaluate()
}

/// The values paranix passes to Nix for the printerfacts host's system (`PARANIX_VALUES`) and the Nix system
/// it evaluates for, as built by the example's stacks with `adjust` applied, references filled in as after apply.
fn printerfacts_system(adjust: impl FnOnce(HostSpec) -> HostSpec) -> (Value, &'static str) {
    let project = stacks::project_adjusted(&ImageSource::Nix, adjust);
    project.check().expect("the project is valid");
    let stack = project.get("printerfacts").expect("the host stack");
    let node = stack.node(&Address::managed("nixos_system", "printerfacts")).expect("the host's system");
    let values = node.inputs.get("values").expect("a system has values");
    let values = values
        .resolve(&mut |reference| match (reference.address.kind(), reference.attribute.as_str()) {
            ("aws_key_pair", "generated_public_key") => Some(Attr::str(DEPLOY_KEY)),
            ("aws_instance", "public_ip") => Some(Attr::str(PUBLIC_IP)),
            _ => None,
        })
        .to_json();
    let system = match node.inputs.get("system").and_then(Attr::as_str) {
        Some("aarch64-linux") => "aarch64-linux",
        _ => "x86_64-linux",
    };
    (values, system)
}

fn printerfacts_values(adjust: impl FnOnce(HostSpec) -> HostSpec) -> Value {
    printerfacts_system(adjust).0
}

fn deployed(adjust: impl FnOnce(HostSpec) -> HostSpec) -> Value {
    let (values, system) = printerfacts_system(adjust);
    Scenario { options: Some(values), system: Some(system), ..Scenario::default() }.evaluate()
}

fn strings(value: &Value) -> Vec<&str> {
    value.as_array().expect("a list").iter().map(|v| v.as_str().expect("a string")).collect()
}

#[test]
fn the_image_admits_only_the_ec2_launch_key_for_root_until_the_first_deploy() {
    let image = Scenario { image: true, ..Scenario::default() }.evaluate();
    assert_eq!(image["failedAssertions"], json!([]), "{image:#}");
    let sshd = &image["sshd"];
    // The launch key reaches root through apply-ec2-data's /root/.ssh/authorized_keys: home directories count,
    // root logs in with a key only, and no key is declared for root.
    assert_eq!(sshd["settings"]["PermitRootLogin"], "prohibit-password");
    assert_eq!(sshd["authorizedKeysInHomedir"], true);
    assert!(
        strings(&sshd["extraConfig"])
            .contains(&"AuthorizedKeysFile %h/.ssh/authorized_keys /etc/ssh/authorized_keys.d/%u")
    );
    assert_eq!(sshd["authorizedKeys"], json!({}), "no key is declared on the image");
    assert_eq!(image["users"]["root"]["keys"], json!([]));
    assert_eq!(sshd["settings"]["PasswordAuthentication"], false);
    assert_eq!(sshd["settings"]["AuthenticationMethods"], "publickey");
    // The bootstrap system runs on any instance type: no antivirus; no shell through AWS either.
    assert_eq!(image["antivirus"], json!({ "daemon": false, "updater": false, "concurrentReload": null }));
    assert_eq!(image["ssmAgent"], false);
    assert_eq!(image["amazonInit"], false);
}

#[test]
fn a_deployed_printerfacts_system_admits_exactly_the_deploy_key_the_rust_code_wires_for_root() {
    let values = printerfacts_values(|h| h);
    assert_eq!(values["options"]["paranix"]["rootKeys"], json!([DEPLOY_KEY]), "{values:#}");
    let system = Scenario { options: Some(values), ..Scenario::default() }.evaluate();
    assert_eq!(system["failedAssertions"], json!([]), "{system:#}");
    let sshd = &system["sshd"];
    assert_eq!(sshd["settings"]["PermitRootLogin"], "prohibit-password");
    // Keys written outside the configuration (apply-ec2-data rewrites root's file at every boot) are not read.
    assert_eq!(sshd["authorizedKeysInHomedir"], false);
    assert_eq!(strings(&sshd["authorizedKeysFiles"]), ["/etc/ssh/authorized_keys.d/%u"]);
    assert!(strings(&sshd["extraConfig"]).contains(&"AuthorizedKeysFile /etc/ssh/authorized_keys.d/%u"));
    assert_eq!(sshd["authorizedKeys"], json!({ "root": format!("{DEPLOY_KEY}\n\n") }));
    assert_eq!(system["printerfacts"]["domain"], PUBLIC_IP);
}

#[test]
fn extra_root_keys_and_staff_keys_are_admitted_next_to_the_deploy_key() {
    let system = deployed(|h| {
        h.root_key(PublicKey::new(BREAK_GLASS_KEY))
            .option(&["paranix", "users", "alice", "keys"], vec![ALICE_KEY])
            .option(&["paranix", "users", "alice", "groups"], vec!["wheel"])
    });
    assert_eq!(system["failedAssertions"], json!([]), "{system:#}");
    let keys = &system["sshd"]["authorizedKeys"];
    assert_eq!(keys["root"], format!("{DEPLOY_KEY}\n{BREAK_GLASS_KEY}\n\n"));
    assert_eq!(keys["alice"], format!("{ALICE_KEY}\n\n"));
    assert_eq!(system["users"]["alice"]["extraGroups"], json!(["wheel"]));
    assert_eq!(system["sshd"]["authorizedKeysInHomedir"], false);
}

#[test]
fn a_non_root_deploy_user_gets_the_deploy_key_sudo_and_nix_trust_and_root_no_login() {
    let values = printerfacts_values(|h| h.ssh_user("deploy"));
    assert_eq!(values["options"]["paranix"]["deployUser"], json!({ "name": "deploy", "keys": [DEPLOY_KEY] }));
    let system = Scenario { options: Some(values), ..Scenario::default() }.evaluate();
    assert_eq!(system["failedAssertions"], json!([]), "{system:#}");
    assert_eq!(system["sshd"]["settings"]["PermitRootLogin"], "no");
    assert_eq!(system["sshd"]["authorizedKeys"], json!({ "deploy": format!("{DEPLOY_KEY}\n\n") }));
    assert_eq!(system["users"]["deploy"]["extraGroups"], json!(["wheel"]));
    assert_eq!(system["nixSettings"]["trusted-users"], json!(["deploy"]));
}

#[test]
fn a_deployed_system_with_no_key_for_anyone_is_refused_by_nixos() {
    // What the Rust code would pass if nothing wired a key: root login off, and NixOS's own assertion refuses
    // the system (nobody could log in), so such a system is never built, let alone deployed.
    let system = Scenario { options: Some(json!({ "options": {} })), ..Scenario::default() }.evaluate();
    assert_eq!(system["sshd"]["settings"]["PermitRootLogin"], "no");
    let failed = strings(&system["failedAssertions"]).join("\n");
    assert!(
        failed.contains("Neither the root account nor any wheel user has a password or SSH authorized key"),
        "{failed}"
    );
}

#[test]
fn a_host_without_a_managed_key_pair_must_name_its_deploy_key_before_any_request() {
    // An EC2 key pair made elsewhere, known by name only: paranix cannot know its public half.
    let web = || {
        HostSpec::new("web", "examples/printerfacts/host.nix")
            .ami("ami-0123456789abcdef0")
            .key_name("existing-key")
            .ssh_identity_file("/root/.ssh/deploy")
    };
    let mut stack = Stack::new("hosts");
    stack.add_host(web());
    let error = stack.check().expect_err("no deploy key is known").to_string();
    assert!(error.contains("nixos_system.web"), "{error}");
    assert!(error.contains("values.options.paranix.rootKeys"), "{error}");
    assert!(error.contains("deploy_public_key"), "{error}");
    assert_eq!(error.matches("nixos_system.web").count(), 1, "only this problem: {error}");

    // Naming it is enough.
    let mut stack = Stack::new("hosts");
    stack.add_host(web().deploy_public_key(PublicKey::new(DEPLOY_KEY)));
    stack.check().expect("a named deploy key is enough");
}

#[test]
fn the_printerfacts_host_runs_only_what_it_declares() {
    // Of the units the stand-ins model (tests/nix/modules/nixpkgs.nix: the services paranix's modules turn on or
    // off, and amazon-image's), exactly these start with the system.
    let system = deployed(|h| h);
    // On the t3.micro (1 GiB): no ClamAV (it would be killed and roll back every deploy), no SSM agent (a root
    // shell outside SSH), no amazon-init (user data applied as configuration).
    assert_eq!(
        strings(&system["services"]),
        [
            "apply-ec2-data",
            "audit-rules-nixos",
            "auditd",
            "fetch-ec2-metadata",
            "nginx",
            "paranix-grow-disk",
            "paranix-noexec-mounts",
            "paranix-print-host-key",
            "printerfacts",
            "sshd",
            "sshd-keygen",
            "tailscaled",
        ],
        "{system:#}"
    );
    assert_eq!(system["ssmAgent"], false);
    assert!(!system["users"].as_object().expect("users").contains_key("ssm-user"));
    assert!(!system["sudoRules"].to_string().contains("ssm-user"), "{}", system["sudoRules"]);
    assert_eq!(system["firewall"]["allowedTCPPorts"], json!([22, 80]));
    assert_eq!(system["firewall"]["allowPing"], true);
}

#[test]
fn no_other_way_in_for_root_or_through_other_key_sources_is_accepted_on_a_deployed_system() {
    // A key added for root outside paranix.rootKeys (another module, the host's own configuration): refused.
    let extra_key =
        json!({ "users": { "users": { "root": { "openssh": { "authorizedKeys": { "keys": [ALICE_KEY] } } } } } });
    let system = deployed_with(|h| h, extra_key);
    let failed = strings(&system["failedAssertions"]).join("\n");
    assert!(failed.contains("root's SSH keys on a deployed system are exactly paranix.rootKeys"), "{failed}");

    // Key files sshd would read besides the declared ones, or a command that makes keys up: refused.
    for extra in [
        json!({ "services": { "openssh": { "authorizedKeysFiles": ["%h/.ssh/authorized_keys"] } } }),
        json!({ "services": { "openssh": { "authorizedKeysCommand": "/run/current-system/sw/bin/fetch-keys" } } }),
        json!({ "services": { "openssh": { "settings": { "AuthorizedKeysFile": ".ssh/authorized_keys" } } } }),
    ] {
        let system = deployed_with(|h| h, extra.clone());
        let failed = strings(&system["failedAssertions"]).join("\n");
        assert!(failed.contains("reads SSH keys from /etc/ssh/authorized_keys.d only"), "{extra}: {failed}");
    }
}

#[tokio::test]
async fn a_configuration_nixos_refuses_fails_the_plan_naming_the_system_and_why() {
    let lib = nixpkgs_lib();
    assert!(
        std::env::var_os("PARANIX_NIXPKGS_LIB").is_some(),
        "tests/nix/fake-printerfacts-host.nix (the stand-in for nix/host.nix) reads nixpkgs' lib/ from \
         PARANIX_NIXPKGS_LIB: run with PARANIX_NIXPKGS_LIB={}",
        lib.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let root = repo_root();
    let intruder = dir.path().join("intruder.nix");
    std::fs::write(
        &intruder,
        format!(
            "{{ imports = [ {host} ]; paranix.rootKeys = [ \"{DEPLOY_KEY}\" ];\n  \
             users.users.root.openssh.authorizedKeys.keys = [ \"{ALICE_KEY}\" ]; }}\n",
            host = root.join("examples/printerfacts/host.nix").display()
        ),
    )
    .expect("write the configuration");
    let builder = paranix::nixos::ImageBuilder::new(&root, dir.path().join("gcroots")).option("build-users-group", "");
    let ws = paranix::ops::Workspace::new(dir.path().join("state"))
        .with_providers(|p| p.register(&["nixos_system"], std::sync::Arc::new(builder)));
    let plan = |system: paranix::nixos::System| {
        let mut stack = Stack::new("hosts");
        stack.add(system.host_nix("tests/nix/fake-printerfacts-host.nix"));
        let project = Project::new().stack(stack);
        let ws = &ws;
        async move {
            paranix::ops::plan(&project, ws, &paranix::ops::PlanRequest::default(), &paranix::events::Silent).await
        }
    };

    // A failed assertion: the plan fails with NixOS' own message, before anything is built or requested.
    let error = plan(paranix::nixos::System::new("web", &intruder)).await.expect_err("NixOS refuses it");
    assert_eq!(error.kind(), ErrorKind::InvalidConfig, "{error}");
    let text = error.to_string();
    assert!(text.contains("nixos_system.web: NixOS refuses the configuration: failed assertions:"), "{text}");
    assert!(text.contains("- paranix: root's SSH keys on a deployed system are exactly paranix.rootKeys"), "{text}");

    // An option that does not exist, set from Rust.
    let system =
        paranix::nixos::System::new("web", "examples/printerfacts/host.nix").option::<String>("paranix.rootKeyz", "x");
    let error = plan(system).await.expect_err("NixOS refuses it");
    assert_eq!(error.kind(), ErrorKind::InvalidConfig, "{error}");
    assert!(error.to_string().contains("The option `paranix.rootKeyz' does not exist"), "{error}");
}

#[test]
fn a_key_that_is_not_one_public_key_line_is_refused_by_the_option_type() {
    // An options prefix (`command=`, `from=`) would change what the key may do; several keys or a private key in
    // one string would admit something else. The option type takes one `<type> <base64> [comment]` line only.
    let (values, system) = printerfacts_system(|h| h);
    for bad in [
        format!("command=\"/bin/sh\" {ALICE_KEY}"),
        format!("{ALICE_KEY}\n{BREAK_GLASS_KEY}"),
        "-----BEGIN OPENSSH PRIVATE KEY-----".to_owned(),
        String::new(),
    ] {
        let extra = json!({ "paranix": { "users": { "alice": { "keys": [bad] } } } });
        let error =
            Scenario { options: Some(values.clone()), system: Some(system), extra: Some(extra), ..Scenario::default() }
                .refused();
        assert!(error.contains("is not of type"), "{bad:?}: {error}");
        assert!(error.contains("paranix.users.alice.keys"), "{bad:?}: {error}");
    }
}

#[test]
fn the_antivirus_daemon_is_refused_on_a_small_machine_however_it_is_turned_on() {
    let extra = json!({ "services": { "clamav": { "daemon": { "enable": true } } } });
    let system = deployed_with(|h| h.instance_type("t3.micro"), extra);
    let failed = strings(&system["failedAssertions"]).join("\n");
    assert!(failed.contains("on this 1024 MiB machine it would be killed"), "{failed}");
    assert_eq!(
        deployed(|h| h.instance_type("t3.micro"))["failedAssertions"],
        json!([]),
        "off by default there, and then nothing to refuse"
    );
}

#[test]
fn the_antivirus_runs_where_it_fits_and_the_ssm_agent_only_when_asked() {
    let large = deployed(|h| h.instance_type("m7i.large"));
    assert_eq!(large["antivirus"], json!({ "daemon": true, "updater": true, "concurrentReload": false }));
    let services = strings(&large["services"]);
    assert!(services.contains(&"clamav-daemon") && services.contains(&"clamav-freshclam"), "{services:?}");

    let ssm = deployed(|h| h.option(&["paranix", "ssmAgent", "enable"], true));
    assert_eq!(ssm["ssmAgent"], true);
    assert!(strings(&ssm["services"]).contains(&"amazon-ssm-agent"));
}

#[test]
fn the_persisted_state_is_mounted_noexec_nosuid_nodev_like_the_tmpfs_root() {
    let system = deployed(|h| h);
    let fs = &system["fileSystems"];
    let root_options = strings(&fs["/"]["options"]);
    assert!(["noexec", "nosuid", "nodev"].iter().all(|o| root_options.contains(o)), "{root_options:?}");
    assert_eq!(fs["/"]["fsType"], "tmpfs");
    assert_eq!(fs["/disk"]["device"], "/dev/disk/by-label/nixos");
    assert_eq!(fs["/nix"]["device"], "/disk/nix");
    assert_eq!(strings(&fs["/nix"]["options"]), ["bind"], "the store stays executable");
    assert_eq!(
        system["persistence"]["/nix/persist"],
        json!({
            "directories": ["/etc/nixos", "/srv", "/var/lib", "/var/log", "/var/lib/nixos"],
            "files": ["/etc/machine-id"],
        })
    );
    // impermanence mounts the persisted directories with `bind` only; paranix's unit remounts every path under
    // which persisted files can be reached, before local-fs.target.
    let mounts = system["mounts"].as_array().expect("mounts");
    assert_eq!(mounts.len(), 5);
    assert!(mounts.iter().all(|m| m["options"] == "bind,x-gvfs-hide"), "{mounts:?}");
    let unit = &system["units"]["noexec"];
    let targets = ["/etc/nixos", "/srv", "/var/lib", "/var/log", "/var/lib/nixos", "/nix/persist", "/disk", "/boot"];
    assert_eq!(unit["scriptArgs"], targets.join(" "), "{unit:#}");
    assert_eq!(strings(&unit["unitConfig"]["RequiresMountsFor"]), targets);
    assert_eq!(unit["unitConfig"]["DefaultDependencies"], false);
    assert_eq!(strings(&unit["before"]), ["local-fs.target"]);
    assert_eq!(strings(&unit["wantedBy"]), ["local-fs.target"]);
    // Every mount at or below each path (mount propagation copies the bind of /nix/persist to
    // /disk/nix/persist), and again whenever a deploy reloads one of those mounts.
    let script = system["noexecScript"].as_str().expect("script");
    assert!(script.contains("mount --rbind /nix/persist /nix/persist"), "{script}");
    assert!(script.contains("findmnt -rn -o TARGET -R \"$target\""), "{script}");
    assert!(script.contains("mount -o remount,bind,noexec,nosuid,nodev \"$mounted\""), "{script}");
    assert!(unit["serviceConfig"]["ExecReload"].as_str().is_some_and(|c| c.ends_with(&targets.join(" "))), "{unit:#}");
    assert_eq!(
        strings(&unit["unitConfig"]["ReloadPropagatedFrom"]),
        [
            "etc-nixos.mount",
            "srv.mount",
            "var-lib.mount",
            "var-log.mount",
            "var-lib-nixos.mount",
            "disk.mount",
            "boot.mount"
        ]
    );
    assert!(strings(&system["specialFileSystems"]["/dev/shm"]).contains(&"noexec"));
    // /run stays as nixpkgs mounts it (documented in common/paranoid.nix).
    assert!(!strings(&system["specialFileSystems"]["/run"]).contains(&"noexec"));
}

#[test]
fn old_generations_are_bounded_and_collected() {
    let bios = deployed(|h| h);
    assert_eq!(bios["grub"]["configurationLimit"], 20);
    assert_eq!(bios["gc"], json!({ "automatic": true, "dates": ["weekly"], "options": "--delete-older-than 30d" }));
    // UEFI (always on Graviton): kernels are copied to the ESP, so fewer generations.
    let uefi = deployed(|h| h.instance_type("t4g.small"));
    assert_eq!(uefi["grub"]["configurationLimit"], 5, "{uefi:#}");
    // The ESP: persistent and writable, so not executable either.
    assert_eq!(uefi["fileSystems"]["/boot"]["device"], "/dev/disk/by-label/ESP");
    let esp = strings(&uefi["fileSystems"]["/boot"]["options"]);
    assert!(["noexec", "nosuid", "nodev", "fmask=0077"].iter().all(|o| esp.contains(o)), "{esp:?}");
}

#[test]
fn the_audit_rules_can_be_locked() {
    assert_eq!(deployed(|h| h)["audit"]["enable"], true);
    let locked = deployed(|h| h.option(&["paranix", "audit", "lock"], true));
    assert_eq!(locked["audit"]["enable"], "lock");
}

#[test]
fn the_host_key_printer_prints_the_persisted_key_in_cloud_init_format_at_every_boot() {
    let system = deployed(|h| h);
    assert!(!strings(&system["services"]).contains(&"print-host-key"), "nixpkgs' printer reads /etc/ssh only");
    let unit = &system["units"]["printHostKey"];
    assert_eq!(unit["scriptArgs"], "/nix/persist/etc/ssh/ssh_host_ed25519_key.pub");
    assert_eq!(unit["serviceConfig"]["StandardOutput"], "tty");
    assert_eq!(unit["serviceConfig"]["TTYPath"], "/dev/console");
    assert!(strings(&unit["after"]).contains(&"sshd-keygen.service"));
    assert_eq!(strings(&unit["wantedBy"]), ["multi-user.target"]);
    assert_eq!(system["sshd"]["hostKeys"], json!(["/nix/persist/etc/ssh/ssh_host_ed25519_key"]));
    // No copy or link of the key in /etc/ssh: apply-ec2-data writes user data's host keys there (`echo >`
    // follows links) and would overwrite the persisted public key.
    assert!(
        system["etc"]
            .as_array()
            .expect("etc")
            .iter()
            .all(|f| !f.as_str().unwrap_or_default().starts_with("ssh/ssh_host"))
    );

    // The script itself, run here on a real key: the block `host_key = console` parses.
    let printed = print_host_keys(unit["script"].as_str().expect("script"));
    let lines: Vec<&str> = printed.output.lines().collect();
    assert_eq!(lines[0], "-----BEGIN SSH HOST KEY FINGERPRINTS-----");
    assert!(lines[1].contains("SHA256:") && lines[1].ends_with("(ED25519)"), "{printed:?}");
    assert_eq!(
        lines[2..],
        [
            "-----END SSH HOST KEY FINGERPRINTS-----",
            "-----BEGIN SSH HOST KEY KEYS-----",
            printed.key.trim(),
            "-----END SSH HOST KEY KEYS-----"
        ]
    );

    // A missing key file never yields a complete block.
    let missing = std::process::Command::new("/bin/sh")
        .args(["-ec", unit["script"].as_str().expect("script"), "print", "/nonexistent/key.pub"])
        .output()
        .expect("run the script");
    assert!(!missing.status.success());
    assert!(!String::from_utf8_lossy(&missing.stdout).contains("-----END SSH HOST KEY KEYS-----"));
}

/// What the host key printer's script prints for a freshly generated key.
#[derive(Debug)]
pub(crate) struct Printed {
    pub(crate) key: String,
    pub(crate) output: String,
}

/// Runs the printer's script (as systemd would: `set -e`, the key files as arguments) on a new ed25519 key.
pub(crate) fn print_host_keys(script: &str) -> Printed {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("ssh_host_ed25519_key");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "root@printerfacts", "-f"])
        .arg(&key)
        .output()
        .expect("run ssh-keygen");
    assert!(made.status.success(), "ssh-keygen: {}", String::from_utf8_lossy(&made.stderr));
    let public = key.with_extension("pub");
    let out = Command::new("/bin/sh").args(["-ec", script, "print"]).arg(&public).output().expect("run the script");
    assert!(out.status.success(), "the printer failed: {}", String::from_utf8_lossy(&out.stderr));
    Printed {
        key: std::fs::read_to_string(&public).expect("read the public key"),
        output: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

#[tokio::test]
async fn the_emulator_prints_exactly_what_the_printer_prints_and_xen_consoles_are_read_without_latest() {
    use crate::aws::{Cloud, one, sparse_image};
    use base64::Engine as _;

    let script = deployed(|h| h)["units"]["printHostKey"]["script"].as_str().expect("script").to_owned();
    let printed = print_host_keys(&script);
    let cloud = Cloud::start().await;
    cloud.moto().set_console_host_key_for_tag("Name", "xen", printed.key.trim());

    // A t2.micro (Xen: no `Latest` console output) booted from an AMI, its host key read from the console.
    let image = cloud.dir.path().join("nixos.raw");
    sparse_image(&image, 64 << 20, 2);
    let mut stack = Stack::new("host");
    let snapshot = stack.add(ebs::Snapshot::new("root").source_file(&image));
    let ami = stack.add(ec2::Image::new("nixos").image_name("nixos-console").root_snapshot(snapshot.id()));
    stack.add(
        ec2::Instance::new("xen").ami(ami.id()).instance_type("t2.micro").tag("Name", "xen").host_key_from_console(),
    );
    let project = one(stack);
    cloud.up(&project).await;
    let state = paranix::ops::state(&project, &cloud.ws, "host").await.expect("state");
    let instance = &state.resources[&"aws_instance.xen".parse().expect("address")];
    let pinned: Vec<&str> = printed.key.split_whitespace().take(2).collect();
    assert_eq!(instance.outputs["ssh_host_key"].as_str(), Some(pinned.join(" ").as_str()));

    // The console ends with exactly the printer's output, line for line (CRLF, as a serial console's).
    let id = instance.outputs["id"].as_str().expect("id");
    let console = cloud.ec2.get_console_output().instance_id(id).send().await.expect("GetConsoleOutput");
    let text = base64::engine::general_purpose::STANDARD.decode(console.output().expect("output")).expect("base64");
    let text = String::from_utf8(text).expect("utf-8");
    let expected = printed.output.replace('\n', "\r\n");
    assert!(text.ends_with(&expected), "console:\n{text}\nprinter:\n{expected}");

    // Asking a Xen instance for the latest output is refused, as on AWS (Nitro only).
    let latest = cloud.ec2.get_console_output().instance_id(id).latest(true).send().await;
    let error = latest.expect_err("Latest on Xen");
    assert_eq!(aws_sdk_ec2::error::ProvideErrorMetadata::code(&error), Some("UnsupportedOperation"));
}

#[test]
fn the_printerfacts_package_evaluates_on_this_nix_and_takes_only_its_sources() {
    let system = deployed(|h| h);
    let source = PathBuf::from(system["printerfacts"]["source"].as_str().expect("a store path"));
    let mut files = Vec::new();
    let mut stack = vec![source.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read the source") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push(path.strip_prefix(&source).expect("inside").display().to_string());
            }
        }
    }
    files.sort();
    let crate_files: Vec<&str> = files.iter().map(String::as_str).filter(|f| f.starts_with("common/")).collect();
    assert!(crate_files.contains(&"common/services/printerfacts/Cargo.toml"), "{files:?}");
    assert!(crate_files.contains(&"common/services/printerfacts/src/main.rs"), "{files:?}");
    assert!(crate_files.iter().all(|f| f.starts_with("common/services/printerfacts/")), "{files:?}");
    let others: Vec<&str> = files.iter().map(String::as_str).filter(|f| !f.starts_with("common/")).collect();
    assert_eq!(others, ["Cargo.lock", "Cargo.toml", "macros/Cargo.toml", "sdk/Cargo.toml", "tests/Cargo.toml"]);
    let exec = system["printerfacts"]["execStart"].as_str().expect("ExecStart");
    assert!(exec.ends_with("-printerfacts-0.1.0/bin/printerfacts"), "{exec}");
}

#[test]
#[ignore = "needs the full pinned nixpkgs and impermanence (PARANIX_SOURCE_nixpkgs / PARANIX_SOURCE_impermanence, \
            or network): run with --ignored where they are available"]
fn the_real_system_and_image_derivations_instantiate_with_the_pinned_nixpkgs() {
    let root = repo_root();
    let values = printerfacts_values(|h| h);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("values.json");
    std::fs::write(&file, values.to_string()).expect("write values");
    for (nix, values) in [("nix/host.nix", Some(&file)), ("nix/image.nix", None)] {
        let mut command = Command::new("nix-instantiate");
        command.arg(root.join(nix));
        if let Some(values) = values {
            command.env("PARANIX_VALUES", values);
        }
        let out = command.output().expect("run nix-instantiate");
        assert!(
            out.status.success(),
            "nix-instantiate {nix} failed (the pinned sources must be reachable):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).trim().ends_with(".drv"));
    }
}

/// Replays the boot-time mounts of a paranoid host in a private mount namespace (a tmpfs for the partition,
/// shared as systemd makes every mount; `/nix` and the persisted directories bound from it as impermanence
/// does), runs the script of `paranix-noexec-mounts` as the evaluated system has it, and tries to execute a
/// program stored in the persisted `/var/lib` under each path that reaches it.
const NOEXEC_REPLAY: &str = r#"set -eu
root=$1 script=$2
mount -t tmpfs tmpfs "$root"
mkdir -p "$root/bin" "$root/usr" "$root/lib" "$root/lib64" "$root/proc" "$root/disk" "$root/nix" "$root/boot" \
  "$root/var/lib" "$root/var/log" "$root/srv" "$root/etc/nixos"
for d in bin usr lib lib64; do if [ -d "/$d" ]; then mount --bind "/$d" "$root/$d"; fi; done
mount -t proc proc "$root/proc"
mount -t tmpfs disk "$root/disk"
mount --make-shared "$root/disk"
mkdir -p "$root/disk/nix/persist/var/lib/nixos" "$root/disk/nix/persist/var/log" "$root/disk/nix/persist/srv" \
  "$root/disk/nix/persist/etc/nixos" "$root/disk/boot"
mount --bind "$root/disk/nix" "$root/nix"
mount --bind "$root/disk/boot" "$root/boot"
for d in etc/nixos srv var/lib var/log var/lib/nixos; do mount --bind "$root/nix/persist/$d" "$root/$d"; done
cp /bin/true "$root/nix/persist/var/lib/program"
cp /bin/true "$root/nix/store-program"
chroot "$root" /bin/sh "$script" /etc/nixos /srv /var/lib /var/log /var/lib/nixos /nix/persist /disk /boot
cp /bin/true "$root/nix/persist/var/lib/nixos/program"
for path in /var/lib/program /nix/persist/var/lib/program /disk/nix/persist/var/lib/program \
  /var/lib/nixos/program /nix/persist/var/lib/nixos/program /disk/nix/persist/var/lib/nixos/program \
  /nix/store-program; do
  if chroot "$root" "$path" 2>/dev/null; then echo "runs $path"; else echo "refused $path"; fi
done
"#;

#[test]
fn the_noexec_unit_closes_every_path_to_the_persisted_files_on_a_replay_of_the_boot_mounts() {
    let system = deployed(|h| h);
    let script = system["noexecScript"].as_str().expect("the script");
    // The script's PATH names util-linux in the store; here the machine's own tools stand in.
    let script: String = script
        .lines()
        .map(|l| if l.trim_start().starts_with("PATH=") { "PATH=/usr/bin:/bin:/usr/sbin:/sbin" } else { l })
        .collect::<Vec<_>>()
        .join("\n");
    let args = &system["units"]["noexec"]["scriptArgs"];
    assert_eq!(args, "/etc/nixos /srv /var/lib /var/log /var/lib/nixos /nix/persist /disk /boot");
    let dir = tempfile::tempdir().expect("tempdir");
    let (root, file) = (dir.path().join("root"), dir.path().join("root-script"));
    std::fs::create_dir(&root).expect("root");
    std::fs::write(&file, &script).expect("script");
    // The script must be inside the chroot: copy it there once the tmpfs is up (the replay reads it from
    // `$root` + path), so hand over its path inside.
    let harness = NOEXEC_REPLAY.replace(
        r#"chroot "$root" /bin/sh "$script""#,
        r#"cp "$script" "$root/noexec-script"; chroot "$root" /bin/sh /noexec-script"#,
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "/bin/sh", "-c", &harness, "replay"])
        .arg(&root)
        .arg(&file)
        .output()
        .expect("run unshare (the test needs root, as the deploy tests do)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "replay failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "refused /var/lib/program",
            "refused /nix/persist/var/lib/program",
            "refused /disk/nix/persist/var/lib/program",
            "refused /var/lib/nixos/program",
            "refused /nix/persist/var/lib/nixos/program",
            "refused /disk/nix/persist/var/lib/nixos/program",
            "runs /nix/store-program",
        ],
        "{stdout}"
    );
}
