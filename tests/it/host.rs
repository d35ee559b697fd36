//! The reference workflow end to end, locally: the printerfacts example's three stacks, with the host
//! declared by `#[host]`, applied against moto (the AWS part) and a rig target standing in for the instance
//! (the NixOS part, through the host's SSH address override). The host's system is evaluated by
//! `tests/nix/fake-printerfacts-host.nix` (no nixpkgs here) from the same JSON values the real evaluation
//! reads, and its activation starts the real printerfacts service on the target; the deploy's health check
//! is `GET /fact` on it.

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use paranix::apply::ApplyOptions;
use paranix::events::Silent;
use paranix::host::HostSpec;
use paranix::ops::{self, PlanRequest, Workspace};
use paranix::prelude::*;
use paranix_tests::rig::{BUILDER_NIX_OPTIONS, Rig, Target};

use crate::aws::{Cloud, Inventory, ours, sparse_image};
use crate::printerfacts_stacks::{self as stacks, ImageSource};

/// `GET path` on the loopback port: status line and body.
fn get(port: u16, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: printerfacts\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response)
}

/// The printerfacts host pointed at `target`: SSH there (the deploy key and the host key it printed on the
/// console are the real ones), HTTP port 80 of the host forwarded to the service's port, the system evaluated
/// by the fake host file, plus `extra`.
fn on_target(
    target: &Target,
    http_port: u16,
    extra: impl FnOnce(HostSpec) -> HostSpec,
) -> impl FnOnce(HostSpec) -> HostSpec {
    let (address, ssh_port) = (target.addr(), target.port());
    move |host: HostSpec| {
        let host = host
            .host_nix("tests/nix/fake-printerfacts-host.nix")
            .ssh_address(address)
            .ssh_port(ssh_port)
            .forward_port(80, http_port)
            .option(&["test", "printerfacts", "bin"], env!("CARGO_BIN_EXE_printerfacts-service"))
            .option(&["test", "printerfacts", "port"], i64::from(http_port))
            .connect_timeout(Duration::from_secs(5))
            .confirm_within(Duration::from_secs(20))
            .health_deadline(Duration::from_secs(10));
        extra(host)
    }
}

/// The addresses and actions of a plan's changes, no-ops left out.
fn planned_changes(plan: &paranix::plan::ProjectPlan) -> Vec<(String, Action)> {
    plan.stacks
        .iter()
        .flat_map(|s| s.changes())
        .filter(|c| c.action != Action::NoOp)
        .map(|c| (c.address.to_string(), c.action))
        .collect()
}

/// The text of `path` inside the system the target runs.
fn in_current_system(target: &Target, path: &str) -> String {
    let current = target.current_system().expect("the target runs a system");
    std::fs::read_to_string(target.store_file(&current).join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

#[tokio::test]
async fn the_printerfacts_example_goes_up_on_moto_and_a_rig_target_and_a_changed_option_is_one_deployment_update() {
    let rig = Rig::new();
    let target = rig.target("printerfacts");
    let mut cloud = Cloud::start().await;
    // The instance prints the target's host key on its console, as the image's paranix-print-host-key unit does:
    // `host_key = console` pins it, and every SSH connection of the deploy is checked against it.
    cloud.moto().set_console_host_key_for_tag("Name", "printerfacts", &target.host_public_key());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut builder = paranix::nixos::ImageBuilder::new(&root, cloud.dir.path().join("gcroots"));
    for option in BUILDER_NIX_OPTIONS.chunks(3) {
        builder = builder.option(option[1], option[2]);
    }
    cloud.ws = Workspace::new(cloud.dir.path().join("state"))
        .with_aws(cloud.aws.clone())
        .with_deployer()
        .with_providers(|p| p.register(&["nixos_system"], Arc::new(builder)));
    let image = cloud.dir.path().join("nixos.raw");
    sparse_image(&image, 64 << 20, 8);
    let source = ImageSource::File(image);
    let http_port = paranix_tests::free_port();

    // The machine first: bootstrap, the image stacks, the key pair and the instance. The target is the
    // instance booted from the image: root logs in with the launch key only, which apply-ec2-data writes to
    // root's authorized_keys at boot (the target's sshd starts with the image's login settings, checked below).
    let machine = stacks::project_adjusted(&source, on_target(&target, http_port, HostSpec::infrastructure_only));
    let plan = cloud.up(&machine).await;
    assert_eq!(plan.summary().add, 10, "{plan}");
    let state = ops::state(&machine, &cloud.ws, "printerfacts").await.expect("state");
    let key_pair = &state.resources[&"aws_key_pair.deployer".parse().expect("address")];
    let launch_key = key_pair.outputs["generated_public_key"].as_str().expect("the pair's public key").to_owned();
    target.add_root_key(&launch_key);

    // The host's system and its deploy: the deploy logs in as root with the key pair, and the deployed system
    // admits exactly that key (from /etc/ssh/authorized_keys.d/root; home directories no longer count).
    let project = stacks::project_adjusted(&source, on_target(&target, http_port, |h| h));
    let plan = cloud.up(&project).await;
    assert_eq!(plan.summary().add, 2, "{plan}");
    let deployed = target.current_system().expect("the target runs a system");
    assert!(deployed.contains("nixos-system-fake-printerfacts-"), "{deployed}");
    let fact = get(http_port, "/fact").expect("the service answers");
    assert!(fact.starts_with("HTTP/1.1 200"), "{fact}");
    let login = in_current_system(&target, "etc/ssh/sshd_config.d/paranix.conf");
    assert!(login.contains("PermitRootLogin prohibit-password\n"), "{login}");
    assert!(login.contains("AuthorizedKeysFile /etc/ssh/authorized_keys.d/%u\n"), "{login}");
    assert_eq!(in_current_system(&target, "etc/ssh/authorized_keys.d/root"), format!("{launch_key}\n\n"));
    // The rig's own key sits in root's home directory: it no longer logs in.
    assert!(!target.ssh_command("true").output().expect("run ssh").status.success(), "home-directory keys are ignored");

    // The NixOS option set from Rust is the instance's public address, as moto reports it.
    let instances = cloud.ec2.describe_instances().send().await.expect("describe");
    let public_ip = instances
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find(|i| i.tags().iter().any(|t| t.key() == Some("Name") && t.value() == Some("printerfacts")))
        .and_then(|i| i.public_ip_address().map(str::to_owned))
        .expect("the printerfacts instance has a public address");
    assert_eq!(in_current_system(&target, "etc/printerfacts-domain").trim(), public_ip);

    cloud.assert_converged(&project).await;

    // A changed NixOS option: a new system is built and deployed; nothing in AWS changes.
    let changed = stacks::project_adjusted(
        &source,
        on_target(&target, http_port, |h| h.option(&["networking", "hostName"], "printerfacts-2")),
    );
    let plan = cloud.plan(&changed).await;
    let changes = planned_changes(&plan);
    assert_eq!(
        changes,
        [
            ("nixos_deployment.printerfacts".to_owned(), Action::Update),
            ("nixos_system.printerfacts".to_owned(), Action::Update)
        ],
        "{plan}"
    );
    let text = plan.to_string();
    assert!(text.contains(&format!("~ toplevel = \"{deployed}\" -> \"/nix/store/")), "{text}");
    assert!(text.contains("+ \"hostName\" = \"printerfacts-2\""), "{text}");
    cloud.up(&changed).await;
    let redeployed = target.current_system().expect("the target runs a system");
    assert_ne!(redeployed, deployed);
    assert!(get(http_port, "/fact").expect("the new generation's service answers").starts_with("HTTP/1.1 200"));
    assert_eq!(in_current_system(&target, "etc/printerfacts-domain").trim(), public_ip);
    cloud.assert_converged(&changed).await;

    // A configuration that takes root's login away would lock the deployer out of the host. The target's sshd
    // takes that system's settings at activation, so the fresh login after activation fails, the deploy fails,
    // and the host rolls back (asked over the connection still open) to the previous system and its logins.
    let lockout = stacks::project_adjusted(
        &source,
        on_target(&target, http_port, |h| {
            h.option(&["networking", "hostName"], "printerfacts-2")
                .configuration("tests/nix/lockout-host.nix")
                .connect_timeout(Duration::from_secs(3))
                .health_deadline(Duration::from_secs(2))
                .confirm_within(Duration::from_secs(8))
        }),
    );
    let plan = cloud.plan(&lockout).await;
    let mut failed = Vec::new();
    for report in ops::apply(&lockout, &cloud.ws, &plan, &ApplyOptions::default()).await.expect("apply runs") {
        if let Err(e) = report.into_result() {
            failed.push(e.to_string());
        }
    }
    let failed = failed.join("\n");
    assert!(failed.contains("a fresh SSH login after activation failed"), "{failed}");
    assert!(failed.contains(&format!("rolled back to {redeployed}")), "{failed}");
    assert_eq!(target.current_system().as_deref(), Some(redeployed.as_str()));
    let switches: Vec<String> = target.switch_log().lines().rev().take(2).map(str::to_owned).collect();
    assert!(
        switches[1].starts_with("test ") && !switches[1].contains(&redeployed),
        "the lockout was activated: {switches:?}"
    );
    assert_eq!(switches[0], format!("test {redeployed}"), "then the previous system again");
    assert_eq!(target.profile().as_deref(), Some(redeployed.as_str()), "the boot default never moved");
    assert!(
        in_current_system(&target, "etc/ssh/sshd_config.d/paranix.conf")
            .contains("PermitRootLogin prohibit-password\n")
    );
    // Back on the previous system, the deploy key logs in again: the next plan sees the host running what
    // `changed` declares, and only the system's build (recorded as the lockout one) goes back.
    let plan = cloud.plan(&changed).await;
    let changes = planned_changes(&plan);
    assert_eq!(changes, [("nixos_system.printerfacts".to_owned(), Action::Update)], "{plan}");
    cloud.up(&changed).await;
    cloud.assert_converged(&changed).await;
    assert_eq!(target.current_system().as_deref(), Some(redeployed.as_str()));

    // Destroy the image and host stacks (the state bucket is protected): nothing of theirs is left in AWS, and
    // the host, no longer managed, keeps running what it runs.
    let request = PlanRequest {
        destroy: true,
        stacks: vec!["aws_image".into(), "printerfacts".into()],
        ..PlanRequest::default()
    };
    let plan = ops::plan(&changed, &cloud.ws, &request, &Silent).await.expect("plan destroy");
    assert_eq!(plan.summary().destroy, 11, "{plan}");
    for report in ops::apply(&changed, &cloud.ws, &plan, &ApplyOptions::default()).await.expect("destroy") {
        report.into_result().expect("destroyed");
    }
    assert_eq!(ours(&cloud).await, Inventory { buckets: 1, ..Inventory::default() });
    assert_eq!(target.current_system().as_deref(), Some(redeployed.as_str()));
}
