//! Poison secret: a real SSH private key, set in configuration (`examples/deploy.rs` reads it from the
//! environment), used for a real deploy to a rig target, must never appear in anything paranix writes:
//! plan text and JSON, the saved plan file, JSON events, error messages, the state (encrypted with
//! `PARANIX_STATE_PASSPHRASE`) or any file left in the temporary directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use paranix_tests::rig::Rig;

/// Every file under `dir`, recursively, with its bytes.
fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else { continue };
        if kind.is_dir() {
            out.extend(files(&path));
        } else if kind.is_file() {
            out.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
        }
    }
    out
}

/// `--json` output: every line of stdout is one JSON object with a `type`.
fn json_lines(what: &str, stdout: &[u8]) -> Vec<serde_json::Value> {
    let text = String::from_utf8_lossy(stdout);
    assert!(!text.trim().is_empty(), "{what}: no output");
    text.lines()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("{what}: not one JSON object per line ({e}): {line}"));
            assert!(value["type"].is_string(), "{what}: a line without a type: {line}");
            value
        })
        .collect()
}

#[test]
fn a_deploy_key_set_in_configuration_appears_in_no_output_event_error_plan_or_state() {
    let rig = Rig::new();
    let target = rig.target("poison");
    let toplevel = rig.build_system("gen1", "poison");
    let key = std::fs::read_to_string(rig.client_key()).expect("the rig's client key");
    // The poison: every line of the key's body (a fragment of any of them would be a leak).
    let poison: Vec<String> =
        key.lines().filter(|l| !l.starts_with("-----") && l.len() >= 16).map(str::to_owned).collect();
    assert!(!poison.is_empty(), "the key has a body");

    let work = tempfile::tempdir().expect("tempdir");
    let (state, tmp, plan_file) = (work.path().join("state"), work.path().join("tmp"), work.path().join("plan.json"));
    std::fs::create_dir_all(&tmp).expect("tmp");
    let run = |args: &[&str], host_key: &str| -> Output {
        Command::new(crate::support::example("deploy"))
            .args(args)
            .env("DEPLOY_HOST", target.addr())
            .env("DEPLOY_PORT", target.port().to_string())
            .env("DEPLOY_HOST_KEY", host_key)
            .env("DEPLOY_TOPLEVEL", &toplevel)
            .env("DEPLOY_SSH_KEY", &key)
            .env("DEPLOY_CONFIRM_SECS", "14")
            .env("DEPLOY_HEALTH_SECS", "4")
            .env("DEPLOY_CONNECT_SECS", "5")
            .env("PARANIX_STATE_DIR", &state)
            .env("PARANIX_STATE_PASSPHRASE", "poison test passphrase, long enough")
            .env("TMPDIR", &tmp)
            .env_remove("AWS_REGION")
            .env_remove("AWS_PROFILE")
            .stdin(Stdio::null())
            .output()
            .expect("run the deploy example")
    };
    let host_key = target.host_public_key();
    let mut outputs: Vec<(String, Output)> = Vec::new();
    let plan_path = plan_file.to_str().expect("utf-8 path");
    for (what, args) in [
        ("plan --out", vec!["plan", "--out", plan_path]),
        ("plan --json", vec!["plan", "--json"]),
        ("up PLANFILE --json", vec!["up", plan_path, "--yes", "--json"]),
        ("plan after up", vec!["plan"]),
        ("state list", vec!["state", "list"]),
        ("state show", vec!["state", "show", "nixos_deployment.host"]),
        ("state show --json", vec!["state", "show", "nixos_deployment.host", "--json"]),
        ("state list --json", vec!["state", "list", "--json"]),
        ("output", vec!["output"]),
        ("output --json", vec!["output", "--json"]),
    ] {
        let out = run(&args, &host_key);
        assert!(out.status.success(), "{what} failed: {}", String::from_utf8_lossy(&out.stderr));
        if args.contains(&"--json") {
            json_lines(what, &out.stdout);
        }
        outputs.push((what.to_owned(), out));
    }
    let kinds = |what: &str| -> Vec<String> {
        let (_, out) = outputs.iter().find(|(w, _)| w == what).expect("ran");
        json_lines(what, &out.stdout).iter().map(|l| l["type"].as_str().unwrap_or_default().to_owned()).collect()
    };
    assert_eq!(kinds("plan --json").last().map(String::as_str), Some("plan"));
    let up = kinds("up PLANFILE --json");
    assert!(up.contains(&"event".to_owned()) && up.last().map(String::as_str) == Some("apply"), "{up:?}");
    assert_eq!(kinds("state show --json"), ["state_resource"]);
    assert_eq!(kinds("output --json"), ["outputs"]);
    assert_eq!(target.current_system().as_deref(), Some(toplevel.as_str()), "the deploy happened");
    let state_file = std::fs::read_to_string(state.join("deploy.json")).expect("state file");
    assert!(state_file.contains("paranix:encrypted:v1:"), "the key is in state, encrypted: {state_file}");

    // Failures: another host answering (a host key that does not match), then the deploy destroyed.
    let other_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHpx5E2Rj9PzeHk9U2LqwH4HTx3HToVcqJHb7oNW7v3v";
    let refused = run(&["up", "--yes", "--json"], other_key);
    assert!(!refused.status.success(), "a wrong host key must fail the run");
    let lines = json_lines("up with a wrong host key", &refused.stdout);
    assert!(lines.last().is_some_and(|l| l["type"] == "apply" || l["type"] == "error"), "{lines:?}");
    assert!(lines.iter().any(|l| l["type"] == "error"), "the failure is a line too: {lines:?}");
    outputs.push(("up with a wrong host key".to_owned(), refused));
    let destroyed = run(&["destroy", "--yes", "--json"], &host_key);
    assert!(destroyed.status.success(), "destroy: {}", String::from_utf8_lossy(&destroyed.stderr));
    outputs.push(("destroy".to_owned(), destroyed));

    let mut places: Vec<(String, Vec<u8>)> = Vec::new();
    for (what, out) in outputs {
        places.push((format!("stdout of {what}"), out.stdout));
        places.push((format!("stderr of {what}"), out.stderr));
    }
    for (path, bytes) in files(work.path()) {
        places.push((path.display().to_string(), bytes));
    }
    assert!(places.iter().any(|(p, _)| p.ends_with("plan.json")), "the plan file was written");
    for (place, bytes) in &places {
        let text = String::from_utf8_lossy(bytes);
        for line in &poison {
            assert!(!text.contains(line.as_str()), "the private key leaked into {place}");
        }
    }
}

#[tokio::test]
async fn without_a_passphrase_the_plan_names_the_secrets_that_would_go_to_state_in_clear() {
    use paranix::events::Silent;
    use paranix::ops::{self, PlanRequest, Workspace};
    use paranix::state::encryption::StateEncryption;

    let dir = tempfile::tempdir().expect("tempdir");
    let project = crate::printerfacts_stacks::project();
    let clear = Workspace::new(dir.path()).with_local_state_only();
    let text = ops::plan(&project, &clear, &PlanRequest::default(), &Silent).await.expect("plan").to_string();
    assert!(
        text.contains("will hold aws_key_pair.deployer.private_key_openssh, nixos_deployment.printerfacts.ssh_private_key in clear"),
        "{text}"
    );
    assert!(text.contains("PARANIX_STATE_PASSPHRASE"), "{text}");

    let encryption = StateEncryption::passphrase("a passphrase of some length").expect("long enough");
    let encrypted = Workspace::new(dir.path()).with_local_state_only().with_state_encryption(encryption);
    let text = ops::plan(&project, &encrypted, &PlanRequest::default(), &Silent).await.expect("plan").to_string();
    assert!(!text.contains("in clear"), "{text}");
}

#[tokio::test]
async fn with_a_kms_key_secrets_are_encrypted_under_a_data_key_generated_once_per_state_history() {
    use paranix::apply::ApplyOptions;
    use paranix::events::Silent;
    use paranix::ops::{self, PlanRequest, Workspace};
    use paranix::prelude::*;
    use paranix::state::encryption::StateEncryption;

    let mut cloud = crate::aws::Cloud::start().await;
    let kms = aws_sdk_kms::Client::new(&crate::aws::aws_config_for(&cloud._moto).await);
    let created = kms.create_key().description("paranix state").send().await.expect("create key");
    let key_id = created.key_metadata().map(|m| m.key_id().to_owned()).expect("key id");
    let state_dir = cloud.dir.path().join("state");
    let encrypted = |aws| {
        Workspace::new(&state_dir).with_aws(aws).with_state_encryption(StateEncryption::kms(cloud.aws.clone(), &key_id))
    };
    cloud.ws = encrypted(cloud.aws.clone());
    let mut stack = Stack::new("keys");
    stack.add(ec2::KeyPair::generate("deployer"));
    let project = Project::new().stack(stack);

    let kms_before = cloud.aws.request_counts().snapshot().get("kms").copied().unwrap_or(0);
    cloud.up(&project).await;
    let state = std::fs::read_to_string(state_dir.join("keys.json")).expect("state");
    assert!(state.contains("paranix:encrypted:v1:") && state.contains("\"encrypted_data_key\""), "{state}");
    assert!(state.contains(&key_id), "the header names the KMS key: {state}");
    assert!(!state.contains("PRIVATE KEY"), "the private key is not in clear: {state}");
    // The state decrypts: the next plan is empty (and its sensitive output readable by name).
    cloud.assert_converged(&project).await;
    let kms_calls = cloud.aws.request_counts().snapshot().get("kms").copied().unwrap_or(0) - kms_before;
    assert!(kms_calls <= 3, "one GenerateDataKey, a Decrypt per loading process, not one per save: {kms_calls}");

    // Without the key configured the state is refused, naming the variable to set.
    cloud.ws = Workspace::new(&state_dir).with_aws(cloud.aws.clone());
    let err = ops::plan(&project, &cloud.ws, &PlanRequest::default(), &Silent).await.expect_err("refused");
    assert!(err.to_string().contains("PARANIX_STATE_KMS_KEY"), "{err}");

    // Destroy with the key again.
    cloud.ws = encrypted(cloud.aws.clone());
    let plan = ops::plan(&project, &cloud.ws, &PlanRequest { destroy: true, ..PlanRequest::default() }, &Silent)
        .await
        .expect("plan destroy");
    for report in ops::apply(&project, &cloud.ws, &plan, &ApplyOptions::default()).await.expect("destroy") {
        report.into_result().expect("destroyed");
    }
}
