//! The `nixos_image` resource with real Nix (Debian's nix-bin) on a small derivation that needs no nixpkgs:
//! the plan knows the derivation without building it, apply builds it, an unchanged configuration is a
//! no-op, a changed one a replacement.

use std::path::Path;

use paranix::nixos;
use paranix::ops::{self, PlanRequest, Workspace};
use paranix::plan::Action;
use paranix::prelude::*;

fn require_nix() {
    let found =
        std::process::Command::new("nix-instantiate").arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(found, "nix-instantiate is missing: install Debian's nix-bin (apt-get install nix-bin)");
}

/// Nix as it works here: single-user as root, no build users, no sandbox (the builder is /bin/sh), no
/// binary cache (no network).
fn workspace(dir: &Path, root: &Path) -> Workspace {
    let builder = nixos::ImageBuilder::new(root, dir.join("gcroots"))
        .option("build-users-group", "")
        .option("sandbox", "false")
        .option("substituters", "");
    Workspace::new(dir).with_providers(|p| p.register(&["nixos_image"], std::sync::Arc::new(builder)))
}

fn project() -> Project {
    let mut stack = Stack::new("images");
    stack.add(nixos::Image::new("tiny", "host.nix").image_nix("tiny-image.nix"));
    Project::new().stack(stack)
}

#[tokio::test]
async fn an_image_is_planned_from_its_derivation_built_once_and_replaced_when_its_configuration_changes() {
    require_nix();
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("project");
    std::fs::create_dir_all(&root).expect("mkdir");
    let nix = Path::new(env!("CARGO_MANIFEST_DIR")).join("nix/tiny-image.nix");
    std::fs::copy(nix, root.join("tiny-image.nix")).expect("copy");
    // A unique configuration per run, so the store never already has the image.
    let salt = format!("{:?}", std::time::SystemTime::now());
    std::fs::write(root.join("host.nix"), format!("{{ hostName = \"tiny\"; salt = \"{salt}\"; }}\n")).expect("write");
    let ws = workspace(&dir.path().join("state"), &root);
    let silent = paranix::events::Silent;

    // The plan knows the derivation (and so the image's identity) without building anything.
    let plan = ops::plan(&project(), &ws, &PlanRequest::default(), &silent).await.expect("plan");
    let change = &plan.stacks[0].changes()[0];
    assert_eq!(change.action, Action::Create);
    let after = change.after.as_ref().expect("after");
    let drv = after["drv_path"].as_str().expect("drv path known at plan time").to_owned();
    let out = after["out_path"].as_str().expect("out path known").to_owned();
    assert!(drv.ends_with(".drv") && Path::new(&drv).exists(), "{drv}");
    assert!(!Path::new(&out).exists(), "nothing was built while planning");
    assert_eq!(after["identity"].as_str(), out.strip_prefix("/nix/store/").map(|r| &r[..32]));

    for report in ops::apply(&project(), &ws, &plan, &Default::default()).await.expect("apply") {
        report.into_result().expect("built");
    }
    let state = ops::state(&project(), &ws, "images").await.expect("state");
    let image = &state.resources[&"nixos_image.tiny".parse().expect("address")];
    let file = image.outputs["file"].as_str().expect("file");
    assert_eq!(file, format!("{out}/disk.raw"));
    assert_eq!(std::fs::metadata(file).expect("image file").len(), 4 << 20);
    assert_eq!(image.outputs["boot_mode"].as_str(), Some("legacy-bios"));
    assert!(dir.path().join("state/gcroots/nixos_image.tiny").exists(), "the image is kept alive by a GC root");

    // Unchanged: a no-op, with nothing built.
    let plan = ops::plan(&project(), &ws, &PlanRequest::default(), &silent).await.expect("plan");
    assert!(plan.is_empty(), "{plan}");

    // A changed configuration is a new derivation: the image is replaced, and the plan says why.
    std::fs::write(root.join("host.nix"), format!("{{ hostName = \"tiny2\"; salt = \"{salt}\"; }}\n")).expect("write");
    let plan = ops::plan(&project(), &ws, &PlanRequest::default(), &silent).await.expect("plan");
    assert_eq!(plan.stacks[0].changes()[0].action, Action::Replace, "{plan}");
    assert!(plan.to_string().contains("`drv_path`, `out_path` force replacement"), "{plan}");
}

#[tokio::test]
async fn a_missing_configuration_file_is_an_error_naming_the_resource_and_field() {
    require_nix();
    let dir = tempfile::tempdir().expect("tempdir");
    let ws = workspace(dir.path(), dir.path());
    let err = ops::plan(&project(), &ws, &PlanRequest::default(), &paranix::events::Silent).await.expect_err("missing");
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    assert!(err.to_string().contains("nixos_image.tiny: field `image_nix`"), "{err}");
}

/// A stand-in for nix/image.nix that records, in its derivation, the two environment variables an image
/// evaluation must never inherit from the operator's shell.
const LEAK_IMAGE: &str = r#"{ configuration, format ? "raw", system ? builtins.currentSystem }:
builtins.derivation {
  name = "leak-check-image";
  inherit system;
  conf = builtins.readFile configuration;
  values = builtins.getEnv "PARANIX_VALUES";
  nixpkgs = builtins.getEnv "PARANIX_SOURCE_nixpkgs";
  builder = "/bin/sh";
  args = [ "-c" "exit 1" ];
}
"#;

/// Run in a child process by the test below, with the operator's variables set (a test cannot set them in its
/// own process without affecting the others).
#[tokio::test]
#[ignore = "run by images_are_evaluated_from_the_program_alone_in_a_root_with_a_space"]
async fn child_plan_of_the_leak_check_image() {
    let root = std::path::PathBuf::from(
        std::env::var("LEAK_CHECK_ROOT")
            .expect("a helper of images_are_evaluated_from_the_program_alone_in_a_root_with_a_space: run that test"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let builder = nixos::ImageBuilder::new(&root, dir.path().join("gcroots"))
        .option("build-users-group", "")
        .option("sandbox", "false")
        .option("substituters", "")
        .source("nixpkgs", "/explicit/nixpkgs");
    let ws = Workspace::new(dir.path()).with_providers(|p| p.register(&["nixos_image"], std::sync::Arc::new(builder)));
    let mut stack = Stack::new("images");
    stack.add(nixos::Image::new("leak", "host.nix").image_nix("leak-image.nix"));
    let project = Project::new().stack(stack);
    let plan = ops::plan(&project, &ws, &PlanRequest::default(), &paranix::events::Silent).await.expect("plan");
    let after = plan.stacks[0].changes()[0].after.clone().expect("after");
    let drv = after["drv_path"].as_str().expect("evaluated").to_owned();
    let binding = |name: &str| {
        let out = std::process::Command::new("nix-store")
            .args(["--query", "--binding", name, &drv])
            .output()
            .expect("nix-store");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    assert_eq!(binding("values"), "", "PARANIX_VALUES leaked into the image evaluation");
    assert_eq!(binding("nixpkgs"), "/explicit/nixpkgs", "only the builder's own source override reaches Nix");
}

#[test]
fn images_are_evaluated_from_the_program_alone_in_a_root_with_a_space() {
    require_nix();
    // A project checked out under a path with a space: handed to Nix as a string (`--argstr`), not parsed as
    // a path expression.
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("my project");
    std::fs::create_dir_all(&root).expect("mkdir");
    std::fs::write(root.join("leak-image.nix"), LEAK_IMAGE).expect("write");
    std::fs::write(root.join("host.nix"), "{ }\n").expect("write");
    let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--ignored", "--exact", "nixos_image::child_plan_of_the_leak_check_image"])
        .env("LEAK_CHECK_ROOT", &root)
        .env("PARANIX_VALUES", "/operator/values.json")
        .env("PARANIX_SOURCE_nixpkgs", "/operator/nixpkgs")
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.contains("1 passed"), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
}
