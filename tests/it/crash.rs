//! Crash safety, black-box: the printerfacts example (its AWS part, against moto) is killed with SIGKILL right
//! after its k-th finished mutating step, for every k; a rerun converges, and moto then holds exactly one of
//! each object, matching the state.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use paranix_tests::moto::MotoServer;

use crate::aws::{Cloud, Inventory, ours, sparse_image};

fn command(moto: &MotoServer, state: &std::path::Path, image: &std::path::Path, args: &[&str]) -> Command {
    let mut c = Command::new(crate::support::example("printerfacts"));
    c.args(args)
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_MAX_ATTEMPTS", "1")
        .env("PARANIX_POLL_INTERVAL_MS", "50")
        .env("PARANIX_STATE_DIR", state)
        .env("PRINTERFACTS_IMAGE", image)
        // moto boots no machine to deploy to: the AWS part only.
        .env("PRINTERFACTS_NO_DEPLOY", "1")
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null());
    c
}

#[tokio::test]
async fn a_run_killed_after_any_step_converges_on_rerun_without_duplicates() {
    // Ten creates in all (bootstrap 1, aws_image 6, printerfacts 3).
    for k in 1..=10 {
        let cloud = Cloud::start().await;
        let moto = &cloud._moto;
        let image = cloud.dir.path().join("nixos.raw");
        sparse_image(&image, 16 << 20, 4);
        let state = cloud.dir.path().join("state");

        let mut child = command(moto, &state, &image, &["up", "--yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run");
        let stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut finished = 0;
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("Creation complete") {
                finished += 1;
                if finished == k {
                    child.kill().expect("SIGKILL");
                    break;
                }
            }
        }
        let _ = child.wait();

        // The killed run's lock stays (a lock is never taken over silently): release it deliberately, as a
        // user would, with the id the error names, then run again. Each stack may hold one.
        let mut rerun = command(moto, &state, &image, &["up", "--yes"]).output().expect("rerun");
        for _ in 0..3 {
            let stderr = String::from_utf8_lossy(&rerun.stderr).into_owned();
            let Some(id) = stderr.split("lock id ").nth(1).map(|rest| rest.chars().take(36).collect::<String>()) else {
                break;
            };
            let unlock = command(moto, &state, &image, &["state", "unlock", &id]).output().expect("unlock");
            assert!(unlock.status.success(), "k={k}: unlock failed: {}", String::from_utf8_lossy(&unlock.stderr));
            rerun = command(moto, &state, &image, &["up", "--yes"]).output().expect("rerun");
        }
        assert!(rerun.status.success(), "k={k}: the rerun failed:\n{}", String::from_utf8_lossy(&rerun.stderr));
        let plan = command(moto, &state, &image, &["plan"]).output().expect("plan");
        let text = String::from_utf8_lossy(&plan.stdout);
        assert!(text.contains("Total: 0 to add, 0 to change, 0 to destroy."), "k={k}: not converged:\n{text}");
        let expected =
            Inventory { buckets: 2, roles: 1, images: 1, snapshots: 1, key_pairs: 1, security_groups: 1, instances: 1 };
        assert_eq!(ours(&cloud).await, expected, "k={k}: exactly one of each object");
    }
}
