//! The repository's Nix files: they parse, they use NixOS 26.05's option names, and the pins are the ones the
//! design was checked against.
//!
//! These tests need `nix-instantiate` (Debian: `apt-get install nix-bin`) and fail without it: a missing tool must
//! not turn into a silently green run. Only parsing runs here; evaluating anything that imports nixpkgs needs the
//! pinned nixpkgs tarball (see nix/README.md).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The repository root: the parent of this test crate.
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the tests crate lives inside the repository").to_path_buf()
}

/// Every `.nix` file of the repository, sorted, skipping build output (`target`) and hidden directories (`.git`,
/// `.paranix`). Symbolic links are not followed.
fn nix_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) -> io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let kind = entry.file_type()?;
            if kind.is_dir() && name != "target" && !name.starts_with('.') {
                walk(&entry.path(), found)?;
            } else if kind.is_file() && name.ends_with(".nix") {
                found.push(entry.path());
            }
        }
        Ok(())
    }
    let mut found = Vec::new();
    walk(&repo_root(), &mut found).expect("walk the repository");
    found.sort();
    found
}

/// The path of `file` relative to the repository root, for messages.
fn relative(file: &Path) -> String {
    file.strip_prefix(repo_root()).unwrap_or(file).display().to_string()
}

// Every Nix file must at least parse. `nix-instantiate --parse` also rejects undefined variables, so a typo in
// a `let` binding fails here, not on the first real build. Nix gets a throw-away state and configuration
// directory, so the test neither needs write access to /nix/var nor reads the machine's nix.conf.
#[test]
fn every_nix_file_parses() {
    match Command::new("nix-instantiate").arg("--version").output() {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "nix-instantiate --version failed ({}): {}; install Debian's nix-bin (apt-get install nix-bin)",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ),
        Err(error) => {
            panic!("cannot run nix-instantiate ({error}): install Debian's nix-bin (apt-get install nix-bin)")
        }
    }

    let files = nix_files();
    assert!(
        files.iter().any(|file| file.ends_with("common/paranoid.nix")),
        "the walk found no NixOS modules: {files:?}"
    );

    let scratch = tempfile::tempdir().expect("a scratch directory for Nix's state");
    let mut failures = Vec::new();
    for file in &files {
        let output = Command::new("nix-instantiate")
            .arg("--parse")
            .arg(file)
            .env("NIX_STATE_DIR", scratch.path().join("state"))
            .env("NIX_LOG_DIR", scratch.path().join("log"))
            .env("NIX_CONF_DIR", scratch.path().join("conf"))
            .env_remove("NIX_REMOTE")
            .output()
            .expect("run nix-instantiate --parse");
        if !output.status.success() {
            failures.push(format!("{}:\n{}", relative(file), String::from_utf8_lossy(&output.stderr).trim()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} Nix files do not parse:\n\n{}",
        failures.len(),
        files.len(),
        failures.join("\n\n")
    );
}

/// NixOS option names that were removed or renamed after 21.05 (the blog's release), with what replaces them.
/// Matching is case-sensitive on purpose: `passwordAuthentication` is the removed top-level openssh option,
/// `PasswordAuthentication` (under `services.openssh.settings`) its replacement.
const OUTDATED_OPTIONS: &[(&str, &str)] = &[
    ("autoOptimiseStore", "nix.settings.auto-optimise-store"),
    ("passwordAuthentication", "services.openssh.settings.PasswordAuthentication"),
    ("challengeResponseAuthentication", "services.openssh.settings.KbdInteractiveAuthentication"),
    ("kbdInteractiveAuthentication", "services.openssh.settings.KbdInteractiveAuthentication"),
    ("permitRootLogin", "services.openssh.settings.PermitRootLogin"),
    ("openssh.forwardX11", "services.openssh.settings.X11Forwarding"),
    ("cleanTmpDir", "boot.tmp.cleanOnBoot"),
    ("tmpOnTmpfs", "boot.tmp.useTmpfs"),
    ("security.acme.email", "security.acme.defaults.email"),
    ("nix.allowedUsers", "nix.settings.allowed-users"),
    ("nix.trustedUsers", "nix.settings.trusted-users"),
    ("ec2.hvm", "nothing: it is an unused legacy option, drop it"),
    ("amazonImage.sizeMB", "virtualisation.diskSize"),
    ("amazonImage.name", "image.baseName"),
];

/// The code part of a line of Nix: everything before a `#` that starts a comment (at the start of the line or
/// after whitespace). Approximate: a ` #` inside a string also ends the code part.
fn code_part(line: &str) -> &str {
    if line.trim_start().starts_with('#') {
        return "";
    }
    line.find(" #").or_else(|| line.find("\t#")).map_or(line, |comment| &line[..comment])
}

// The 2021 blog was written for NixOS 21.05; several of its option names were renamed or removed since. Old names
// still evaluate for a while with a warning, then break on a later upgrade, so none may appear in our Nix code.
// Comments may mention them (to explain a rename).
#[test]
fn no_outdated_option_names() {
    let mut findings = Vec::new();
    for file in nix_files() {
        let text = fs::read_to_string(&file).expect("read a Nix file");
        for (number, line) in text.lines().enumerate() {
            let code = code_part(line);
            for (old, new) in OUTDATED_OPTIONS {
                if code.contains(old) {
                    findings.push(format!("{}:{}: `{old}` (use {new}): {}", relative(&file), number + 1, line.trim()));
                }
            }
        }
    }
    assert!(findings.is_empty(), "outdated NixOS option names:\n{}", findings.join("\n"));
}

// The grep above must actually catch things: run its rules over a line in the blog's style and over the
// current spelling of the same settings.
#[test]
fn outdated_option_rules_catch_old_names_only() {
    let flagged = |line: &str| OUTDATED_OPTIONS.iter().filter(|(old, _)| code_part(line).contains(old)).count();
    assert_eq!(flagged("services.openssh.passwordAuthentication = false;"), 1);
    assert_eq!(flagged("  services.openssh.permitRootLogin = \"no\"; nix.autoOptimiseStore = true;"), 2);
    assert_eq!(flagged("services.openssh.settings.PasswordAuthentication = false;"), 0);
    assert_eq!(flagged("services.openssh.settings.KbdInteractiveAuthentication = false;"), 0);
    assert_eq!(flagged("security.acme.defaults.email = \"ops@example.com\";"), 0);
    assert_eq!(flagged("boot.tmp.cleanOnBoot = true; # was boot.cleanTmpDir"), 0);
    assert_eq!(flagged("# nix.autoOptimiseStore was renamed"), 0);
}

/// The pins of nix/sources.json that the NixOS modules were written against (design notes: ami-nix.md section 3).
const PINS: &[(&str, &str, &str)] = &[
    ("nixpkgs", "5880666fd9eb563038431edb35c2d0aa595884e6", "10pxdxabgigza11csyjnrpzr9afangd3vcfwjhmk8kpb94z5ji1r"),
    (
        "impermanence",
        "7b1d382faf603b6d264f58627330f9faa5cba149",
        "1iip4kjrk09mnha9jhafvcg61g1d0g6pqnljzdp08zz6zk38jzyk",
    ),
];

/// The field of a sources.json entry as a string, or a failure naming the entry and the field.
fn field<'a>(entry: &'a Value, source: &str, name: &str) -> &'a str {
    entry
        .get(name)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("nix/sources.json: {source}.{name} is missing or not a string"))
}

// nix/sources.json is niv's format, read by nix/sources.nix. A pin bump must change rev, url and sha256 together;
// this test pins the exact revisions (change it deliberately with the pin) and checks each entry is consistent:
// the url is the url_template filled in, and the hash looks like Nix's base32 SHA-256.
#[test]
fn sources_json_pins_the_expected_revisions() {
    let path = repo_root().join("nix/sources.json");
    let text = fs::read_to_string(&path).expect("read nix/sources.json");
    let sources: Value = serde_json::from_str(&text).expect("nix/sources.json is JSON");
    let entries = sources.as_object().expect("nix/sources.json is an object");
    let mut names: Vec<&str> = entries.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["impermanence", "nixpkgs"]);

    for (source, rev, sha256) in PINS {
        let entry = &sources[*source];
        for name in
            ["branch", "description", "homepage", "owner", "repo", "rev", "sha256", "type", "url", "url_template"]
        {
            field(entry, source, name);
        }
        assert_eq!(field(entry, source, "rev"), *rev, "{source}.rev");
        assert_eq!(field(entry, source, "sha256"), *sha256, "{source}.sha256");
        assert_eq!(field(entry, source, "type"), "tarball", "{source}.type: sources.nix only fetches tarballs");

        let expected_url = field(entry, source, "url_template")
            .replace("<owner>", field(entry, source, "owner"))
            .replace("<repo>", field(entry, source, "repo"))
            .replace("<rev>", rev);
        assert_eq!(field(entry, source, "url"), expected_url, "{source}.url must be url_template filled in");

        let base32 = field(entry, source, "sha256");
        assert!(
            base32.len() == 52 && base32.chars().all(|c| "0123456789abcdfghijklmnpqrsvwxyz".contains(c)),
            "{source}.sha256 is not a Nix base32 SHA-256: {base32}"
        );
    }
    assert_eq!(field(&sources["nixpkgs"], "nixpkgs", "branch"), "nixos-26.05");
}

#[test]
fn the_modules_take_impermanence_from_the_evaluation_not_from_their_own_pin() {
    // nix/eval.nix imports nixpkgs' modules and impermanence from one `sources`: a caller's `sources` changes
    // both. A module of common/ that imported nix/sources.nix itself would pin impermanence behind its back.
    for file in nix_files().iter().filter(|f| f.starts_with(repo_root().join("common"))) {
        let text = fs::read_to_string(file).expect("read");
        assert!(!text.contains("sources.nix"), "{} imports nix/sources.nix itself", file.display());
    }
    let eval = fs::read_to_string(repo_root().join("nix/eval.nix")).expect("read");
    assert!(eval.contains("\"${sources.impermanence}/nixos.nix\""), "nix/eval.nix imports impermanence from `sources`");
}
