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

/// The printerfacts host pointed at `target`: SSH there with the rig's key and host key, HTTP port 80 of
/// the host forwarded to the service's port, the system evaluated by the fake host file, plus `extra`.
fn on_target(
    rig: &Rig,
    target: &Target,
    http_port: u16,
    extra: impl FnOnce(HostSpec) -> HostSpec,
) -> impl FnOnce(HostSpec) -> HostSpec {
    let (address, ssh_port, host_key, key) =
        (target.addr(), target.port(), target.host_public_key(), rig.client_key().to_path_buf());
    move |host: HostSpec| {
        let host = host
            .host_nix("tests/nix/fake-printerfacts-host.nix")
            .ssh_address(address)
            .ssh_port(ssh_port)
            .ssh_host_key(PublicKey::new(host_key))
            .ssh_identity_file(key)
            .forward_port(80, http_port)
            .option(&["test", "printerfacts", "bin"], env!("CARGO_BIN_EXE_printerfacts-service"))
            .option(&["test", "printerfacts", "port"], i64::from(http_port))
            .confirm_within(Duration::from_secs(10))
            .health_deadline(Duration::from_secs(10));
        extra(host)
    }
}

#[tokio::test]
async fn the_printerfacts_example_goes_up_on_moto_and_a_rig_target_and_a_changed_option_is_one_deployment_update() {
    let rig = Rig::new();
    let target = rig.target("printerfacts");
    let mut cloud = Cloud::start().await;
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

    // up: bootstrap, the image stacks and the host (instance, system, deployment).
    let project = stacks::project_adjusted(&source, on_target(&rig, &target, http_port, |h| h));
    let plan = cloud.up(&project).await;
    assert_eq!(plan.summary().add, 12, "{plan}");
    let deployed = target.current_system().expect("the target runs a system");
    assert!(deployed.contains("nixos-system-fake-printerfacts-"), "{deployed}");
    let fact = get(http_port, "/fact").expect("the service answers");
    assert!(fact.starts_with("HTTP/1.1 200"), "{fact}");

    // The NixOS option set from Rust is the instance's public address, as moto reports it.
    let instances = cloud.ec2.describe_instances().send().await.expect("describe");
    let public_ip = instances
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find(|i| i.tags().iter().any(|t| t.key() == Some("Name") && t.value() == Some("printerfacts")))
        .and_then(|i| i.public_ip_address().map(str::to_owned))
        .expect("the printerfacts instance has a public address");
    assert_eq!(target.ssh("cat /run/current-system/etc/printerfacts-domain").trim(), public_ip);

    cloud.assert_converged(&project).await;

    // A changed NixOS option: a new system is built and deployed; nothing in AWS changes.
    let changed = stacks::project_adjusted(
        &source,
        on_target(&rig, &target, http_port, |h| h.option(&["networking", "hostName"], "printerfacts-2")),
    );
    let plan = cloud.plan(&changed).await;
    let changes: Vec<(String, Action)> = plan
        .stacks
        .iter()
        .flat_map(|s| s.changes())
        .filter(|c| c.action != Action::NoOp)
        .map(|c| (c.address.to_string(), c.action))
        .collect();
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
    assert_eq!(target.ssh("cat /run/current-system/etc/printerfacts-domain").trim(), public_ip);
    cloud.assert_converged(&changed).await;

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
