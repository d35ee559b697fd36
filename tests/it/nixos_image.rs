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
