//! paranix benchmarks against moto (with a latency-injecting proxy) and the SSH rig. Each scenario runs in its
//! own process, so its peak RSS is its own; each prints the median of several runs and its request counts.
//!
//! ```sh
//! cargo run -p paranix-tests --features bench --bin bench            # every scenario
//! cargo run -p paranix-tests --features bench --bin bench -- D B     # some
//! ```
//!
//! Scenarios: A no-op plan of the printerfacts stacks; B N instances each with its own security group
//! (apply, no-op plan, destroy at 50 ms injected latency); C a 2 GiB raw image (25 % non-zero blocks) through
//! EBS direct and S3 multipart, against `aws s3 cp`; D offline plan of 1k and 10k resources (CPU time);
//! E deploy of an unchanged closure to 1 and 4 rig targets.

#![allow(clippy::print_stdout, clippy::print_stderr, reason = "a benchmark prints its figures")]
#![allow(missing_docs, reason = "a binary")]

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use paranix::apply::ApplyOptions;
use paranix::aws::limit::RateLimit;
use paranix::aws::{AwsContext, AwsOptions};
use paranix::events::Silent;
use paranix::ops::{self, PlanRequest, Workspace};
use paranix::prelude::*;
use paranix_tests::moto::MotoServer;
use paranix_tests::proxy::LatencyProxy;

#[allow(dead_code, reason = "shared with the example; the bench uses part of it")]
#[path = "../../examples/printerfacts/stacks.rs"]
mod stacks;

const LATENCY: Duration = Duration::from_millis(50);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(pos) = args.iter().position(|a| a == "--scenario") {
        let scenario = args[pos + 1].clone();
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        runtime.block_on(run(&scenario));
        println!("  peak RSS {} MiB", peak_rss_kib() / 1024);
        return;
    }
    let chosen: Vec<String> =
        if args.is_empty() { ["A", "B", "C", "D", "E", "F"].map(String::from).to_vec() } else { args };
    println!("paranix benchmark, {} cores, {}", std::thread::available_parallelism().map_or(0, |n| n.get()), date());
    for scenario in chosen {
        let status =
            Command::new(std::env::current_exe().expect("exe")).args(["--scenario", &scenario]).status().expect("run");
        if !status.success() {
            eprintln!("scenario {scenario} failed: {status}");
        }
    }
}

fn date() -> String {
    Command::new("date")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// CPU time (user + system) of this process so far, in seconds, from `/proc/self/stat` (clock ticks of 1/100 s).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or_default().split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat(5), i.e. 11 and 12 after the state field.
    (ticks(11) + ticks(12)) as f64 / 100.0
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

async fn aws(endpoint: String, limits: Option<BTreeMap<&'static str, RateLimit>>) -> Arc<AwsContext> {
    let options = AwsOptions {
        region: Some("us-east-1".into()),
        endpoint_url: Some(endpoint),
        poll_interval: Some(Duration::from_millis(50)),
        static_credentials: Some(("bench".into(), "bench".into())),
        max_attempts: Some(1),
        rate_limits: limits,
    };
    Arc::new(AwsContext::load(&options).await.expect("aws context"))
}

/// Requests per service since `before`, divided by `runs`.
fn requests(ctx: &AwsContext, before: &BTreeMap<&'static str, u64>, runs: u64) -> String {
    let after = ctx.request_counts().snapshot();
    after
        .iter()
        .map(|(s, n)| format!("{s} {}", (n - before.get(s).copied().unwrap_or(0)) / runs))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn run(scenario: &str) {
    match scenario {
        "A" => scenario_a().await,
        "B" => scenario_b().await,
        "C" => scenario_c().await,
        "D" => scenario_d(),
        "E" => scenario_e().await,
        "F" => scenario_f().await,
        other => eprintln!("unknown scenario {other}"),
    }
}

/// A: the printerfacts stacks, up once, then no-op plans (local moto, no injected latency).
async fn scenario_a() {
    let moto = MotoServer::start();
    let ctx = aws(moto.endpoint(), None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("disk.raw");
    std::fs::File::create(&image).and_then(|f| f.set_len(64 << 20)).expect("image");
    let project = stacks::project_infrastructure(&stacks::ImageSource::File(image), "t3.micro");
    let ws = Workspace::new(dir.path().join("state")).with_aws(ctx.clone());
    let plan = ops::plan(&project, &ws, &PlanRequest::default(), &Silent).await.expect("plan");
    for r in ops::apply(&project, &ws, &plan, &ApplyOptions::default()).await.expect("apply") {
        r.into_result().expect("up");
    }
    let mut samples = Vec::new();
    let before = ctx.request_counts().snapshot();
    for _ in 0..7 {
        let t = Instant::now();
        let plan = ops::plan(&project, &ws, &PlanRequest::default(), &Silent).await.expect("plan");
        samples.push(t.elapsed());
        assert!(plan.is_empty());
    }
    let total = ctx.request_counts().total() - before.values().sum::<u64>();
    println!(
        "A  no-op plan, printerfacts (10 resources, 3 stacks): median {:?}, {} requests per plan ({})",
        median(samples),
        total / 7,
        requests(&ctx, &before, 7)
    );
}

fn fleet(n: usize, ami: &str) -> Project {
    let mut stack = Stack::new("fleet");
    for i in 0..n {
        let sg = stack.add(ec2::SecurityGroup::new(format!("web{i}")).ingress(ec2::Rule::tcp(443).cidr("10.0.0.0/8")));
        stack.add(ec2::Instance::new(format!("web{i}")).ami(ami).security_group(sg.id()));
    }
    Project::new().stack(stack)
}

/// B: N instances with N security groups through the 50 ms proxy. Rate limits are raised to 1000/s so the
/// figures show the graph's parallelism, not paranix's pacing.
async fn scenario_b() {
    let moto = MotoServer::start();
    let proxy = LatencyProxy::start(([127, 0, 0, 1], moto.port()).into(), LATENCY);
    let limits = BTreeMap::from([("ec2", RateLimit { per_second: 1000.0, burst: 1000.0 })]);
    let ctx = aws(proxy.endpoint(), Some(limits)).await;
    let ami = {
        let out = Command::new("aws")
            .args([
                "ec2",
                "describe-images",
                "--query",
                "Images[0].ImageId",
                "--output",
                "text",
                "--endpoint-url",
                &moto.endpoint(),
                "--region",
                "us-east-1",
            ])
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .output()
            .expect("aws cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    for (n, parallelisms) in [(10, vec![1, 10, 50]), (100, vec![1, 10, 50]), (300, vec![10, 50])] {
        for p in parallelisms {
            let dir = tempfile::tempdir().expect("tempdir");
            let ws = Workspace::new(dir.path()).with_aws(ctx.clone());
            let project = fleet(n, &ami);
            let options = ApplyOptions { parallelism: p, ..ApplyOptions::default() };
            let t = Instant::now();
            let plan = ops::plan(&project, &ws, &PlanRequest::default(), &Silent).await.expect("plan");
            for r in ops::apply(&project, &ws, &plan, &options).await.expect("apply") {
                r.into_result().expect("apply");
            }
            let apply = t.elapsed();
            let before = ctx.request_counts().snapshot();
            let mut samples = Vec::new();
            for _ in 0..3 {
                let t = Instant::now();
                assert!(ops::plan(&project, &ws, &PlanRequest::default(), &Silent).await.expect("plan").is_empty());
                samples.push(t.elapsed());
            }
            let per_plan = (ctx.request_counts().total() - before.values().sum::<u64>()) / 3;
            let t = Instant::now();
            let request = PlanRequest { destroy: true, ..PlanRequest::default() };
            let plan = ops::plan(&project, &ws, &request, &Silent).await.expect("plan");
            for r in ops::apply(&project, &ws, &plan, &options).await.expect("destroy") {
                r.into_result().expect("destroy");
            }
            println!(
                "B  N={n:<3} p={p:<2}: apply {:>6.1}s, no-op plan median {:?} ({per_plan} requests), destroy {:>6.1}s",
                apply.as_secs_f64(),
                median(samples),
                t.elapsed().as_secs_f64()
            );
        }
    }
}

/// C: a 2 GiB raw image, 25 % non-zero blocks spread over it.
/// Uploads of the same 2 GiB image by each path, this many times each (medians reported).
const C_RUNS: usize = 3;

async fn scenario_c() {
    let moto = MotoServer::start();
    let ctx = aws(moto.endpoint(), None).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let image = dir.path().join("disk.raw");
    {
        use std::io::{Seek, SeekFrom, Write};
        let mut file = std::fs::File::create(&image).expect("create");
        file.set_len(2 << 30).expect("size");
        let block = vec![0x5au8; 512 * 1024];
        for i in (0..4096u64).step_by(4) {
            file.seek(SeekFrom::Start(i * 512 * 1024)).expect("seek");
            file.write_all(&block).expect("write");
        }
    }
    for (label, build) in [("EBS direct", true), ("S3 multipart", false)] {
        let (mut walls, mut cpus, mut counts) = (Vec::new(), Vec::new(), String::new());
        for run in 0..C_RUNS {
            let ws =
                Workspace::new(dir.path().join(format!("{}-{run}", label.replace(' ', "-")))).with_aws(ctx.clone());
            let mut stack = Stack::new("upload");
            if build {
                stack.add(ebs::Snapshot::new("disk").source_file(&image));
            } else {
                let bucket = stack.add(s3::Bucket::new("b").bucket(format!("paranix-bench-upload-{run}")));
                stack.add(s3::Object::new("disk").bucket(bucket.name()).key("disk.raw").source_file(&image));
            }
            let project = Project::new().stack(stack);
            let before = ctx.request_counts().snapshot();
            let cpu_before = cpu_secs();
            let t = Instant::now();
            let plan = ops::plan(&project, &ws, &PlanRequest::default(), &Silent).await.expect("plan");
            for r in ops::apply(&project, &ws, &plan, &ApplyOptions::default()).await.expect("apply") {
                r.into_result().expect("upload");
            }
            walls.push(t.elapsed());
            cpus.push(Duration::from_secs_f64(cpu_secs() - cpu_before));
            counts = requests(&ctx, &before, 1);
            // Free the emulator's memory before the next run.
            let request = PlanRequest { destroy: true, ..PlanRequest::default() };
            let plan = ops::plan(&project, &ws, &request, &Silent).await.expect("plan destroy");
            for r in ops::apply(&project, &ws, &plan, &ApplyOptions::default()).await.expect("destroy") {
                r.into_result().expect("destroyed");
            }
        }
        let secs = median(walls).as_secs_f64();
        println!(
            "C  2 GiB, {label}: median {secs:.1}s of {C_RUNS} ({:.0} MiB/s of image), CPU {:.1}s, requests: {counts}, \
             peak RSS so far {} MiB",
            2048.0 / secs,
            median(cpus).as_secs_f64(),
            peak_rss_kib() / 1024
        );
    }
    let bucket = "paranix-bench-cli";
    let cli = |args: &[&str]| {
        Command::new("aws")
            .args(args)
            .args(["--endpoint-url", &moto.endpoint(), "--region", "us-east-1"])
            .stdout(std::process::Stdio::null())
            .env("AWS_ACCESS_KEY_ID", "bench")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .status()
    };
    let mut walls = Vec::new();
    let made = cli(&["s3", "mb", &format!("s3://{bucket}")]);
    for _ in 0..C_RUNS {
        let t = Instant::now();
        match cli(&[
            "s3",
            "cp",
            "--only-show-errors",
            image.to_str().expect("utf-8"),
            &format!("s3://{bucket}/cli.raw"),
        ]) {
            Ok(s) if s.success() => walls.push(t.elapsed()),
            other => {
                println!("C  aws s3 cp failed: {other:?} (mb: {made:?})");
                return;
            }
        }
        let _ = cli(&["s3", "rm", &format!("s3://{bucket}/cli.raw")]);
    }
    let secs = median(walls).as_secs_f64();
    println!("C  2 GiB, aws s3 cp: median {secs:.1}s of {C_RUNS} ({:.0} MiB/s)", 2048.0 / secs);
}

fn generated(n: usize) -> Stack {
    let mut stack = Stack::new("big");
    for i in 0..n / 2 {
        let sg = stack.add(
            ec2::SecurityGroup::new(format!("sg{i}"))
                .ingress(ec2::Rule::tcp(443).cidr("10.0.0.0/8"))
                .tag("i", i.to_string()),
        );
        stack.add(ec2::Instance::new(format!("vm{i}")).ami("ami-12345678").security_group(sg.id()));
    }
    stack
}

fn cpu_time() -> Duration {
    // utime + stime of this process, from /proc (clock ticks, 100 per second on Linux).
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: u64 = fields.get(11).and_then(|u| u.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|s| s.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// D: offline plan of generated stacks (half security groups, half instances referring to them).
fn scenario_d() {
    for n in [1_000, 10_000] {
        let stack = generated(n);
        let mut samples = Vec::new();
        let mut cpu = Vec::new();
        for _ in 0..5 {
            let (t, c) = (Instant::now(), cpu_time());
            let plan = paranix::testing::plan_offline(&stack).expect("plan");
            samples.push(t.elapsed());
            cpu.push(cpu_time() - c);
            assert_eq!(plan.summary().add, n);
        }
        println!("D  offline plan of {n:>6} resources: median {:?} wall, {:?} CPU", median(samples), median(cpu));
    }
}

/// E: deploying a closure the hosts already run, to 1 and to 4 rig targets.
async fn scenario_e() {
    use paranix::nixos::Deployment;
    let rig = paranix_tests::rig::Rig::new();
    let system = rig.build_system("bench", "bench-e");
    let targets: Vec<_> = (0..4).map(|i| rig.target(&format!("b{i}"))).collect();
    for count in [1, 4] {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = Workspace::new(dir.path()).with_deployer();
        let mut stack = Stack::new("hosts");
        for (i, t) in targets.iter().take(count).enumerate() {
            stack.add(
                Deployment::new(format!("h{i}"))
                    .host(t.addr())
                    .port(i64::from(t.port()))
                    .host_key(t.host_public_key())
                    .identity_file(rig.client_key())
                    .toplevel(system.clone()),
            );
        }
        let project = Project::new().stack(stack);
        // The first deploy puts the system on the hosts; the measured ones find it there.
        let plan = ops::plan(&project, &ws, &PlanRequest::default(), &Silent).await.expect("plan");
        for r in ops::apply(&project, &ws, &plan, &ApplyOptions::default()).await.expect("deploy") {
            r.into_result().expect("deploy");
        }
        let mut samples = Vec::new();
        for _ in 0..5 {
            let fresh = tempfile::tempdir().expect("tempdir");
            let ws = Workspace::new(fresh.path()).with_deployer();
            let t = Instant::now();
            let plan = ops::plan(&project, &ws, &PlanRequest::default(), &Silent).await.expect("plan");
            for r in ops::apply(&project, &ws, &plan, &ApplyOptions::default()).await.expect("deploy") {
                r.into_result().expect("deploy");
            }
            samples.push(t.elapsed());
        }
        println!("E  unchanged closure to {count} host(s): median {:?}", median(samples));
    }
}

/// F: deploying a new system (one path to copy, a switch, a fresh login, a confirmation) with one one-host stack,
/// and with four independent one-host stacks, which run at the same time.
async fn scenario_f() {
    use paranix::nixos::Deployment;
    let rig = paranix_tests::rig::Rig::new();
    let single = rig.target("f-single");
    let targets: Vec<_> = (0..4).map(|i| rig.target(&format!("f{i}"))).collect();
    let deployment = |t: &paranix_tests::rig::Target, system: &str| {
        Deployment::new("h")
            .host(t.addr())
            .port(i64::from(t.port()))
            .host_key(t.host_public_key())
            .identity_file(rig.client_key())
            .toplevel(system.to_owned())
    };
    let apply = |project: Project| async move {
        let dir = tempfile::tempdir().expect("tempdir");
        let ws = Workspace::new(dir.path()).with_deployer();
        let t = Instant::now();
        let plan = ops::plan(&project, &ws, &PlanRequest::default(), &Silent).await.expect("plan");
        for r in ops::apply(&project, &ws, &plan, &ApplyOptions::default()).await.expect("deploy") {
            r.into_result().expect("deploy");
        }
        t.elapsed()
    };
    let (mut one, mut four) = (Vec::new(), Vec::new());
    for sample in 0..6 {
        // A new generation each time: one path to copy, everything else in place.
        let system = rig.build_system(&format!("f{sample}"), "bench-f");
        let mut stack = Stack::new("host");
        stack.add(deployment(&single, &system));
        let elapsed = apply(Project::new().stack(stack)).await;
        let mut project = Project::new();
        for (i, t) in targets.iter().enumerate() {
            let mut stack = Stack::new(format!("host{i}"));
            stack.add(deployment(t, &system));
            project = project.stack(stack);
        }
        let elapsed_four = apply(project).await;
        // The first round copies the shared dependencies too; the rest are what a redeploy costs.
        if sample > 0 {
            one.push(elapsed);
            four.push(elapsed_four);
        }
    }
    let (one, four) = (median(one), median(four));
    println!(
        "F  new system, 1 one-host stack: median {one:?}; 4 independent one-host stacks: median {four:?} ({:.2}x)",
        four.as_secs_f64() / one.as_secs_f64()
    );
}
