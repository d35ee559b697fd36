//! Embedding paranix in an internal tool, without its CLI: build a stack, read the plan as data, apply it
//! with your own event observer, read the outputs.
//!
//! This example applies against paranix's in-memory cloud so it runs anywhere:
//! `cargo run --example embed`.

#![allow(clippy::print_stdout, reason = "an example tool prints its own summary")]

use std::sync::Arc;

use paranix::apply::ApplyOptions;
use paranix::events::Event;
use paranix::ops::{self, PlanRequest, Workspace};
use paranix::prelude::*;
use paranix::testing::MemoryCloud;

const WEB_SG: OutputKey<SecurityGroupId> = OutputKey::new("web_sg");

fn project() -> Project {
    let mut stack = Stack::new("tooling");
    stack.add(s3::Bucket::new("logs").bucket("example-tooling-logs").versioning(true));
    let sg = stack.add(ec2::SecurityGroup::new("web").ingress(ec2::Rule::tcp(443).cidr("10.0.0.0/8")));
    stack.add(
        iam::Role::new("shipper").assume_role_policy(
            iam::PolicyDocument::new()
                .statement(iam::Statement::allow().service_principal("ec2.amazonaws.com").action("sts:AssumeRole")),
        ),
    );
    stack.export(&WEB_SG, sg.id());
    Project::new().stack(stack)
}

#[tokio::main]
async fn main() -> paranix::Result<()> {
    let dir = std::env::temp_dir().join(format!("paranix-embed-{}", std::process::id()));
    let cloud = MemoryCloud::new();
    let ws = Workspace::new(&dir).with_providers(|p| p.fallback(Arc::new(cloud.clone())));
    let project = project();

    // The plan is data: filter it, count it, print your own summary.
    let plan = ops::plan(&project, &ws, &PlanRequest::default(), &paranix::events::Silent).await?;
    for stack in &plan.stacks {
        let creates: Vec<String> = stack.changes_with(Action::Create).map(|c| c.address.to_string()).collect();
        println!("{}: will create {}", stack.stack, creates.join(", "));
    }

    // Apply with an observer of your own.
    let observer = Arc::new(|event: &Event| {
        if let Event::StepFinished { address, id, .. } = event {
            println!("  done: {address} {}", id.clone().unwrap_or_default());
        }
    });
    let options = ApplyOptions { observer, ..ApplyOptions::default() };
    for report in ops::apply(&project, &ws, &plan, &options).await? {
        let report = report.into_result()?;
        println!("{}: {} steps, outputs {:?}", report.stack, report.done.len(), report.outputs);
    }

    // Outputs are recorded in state; a second plan is empty.
    let outputs = ops::outputs(&project, &ws, "tooling", false).await?;
    println!("web_sg = {}", outputs["web_sg"].to_json());
    let again = ops::plan(&project, &ws, &PlanRequest::default(), &paranix::events::Silent).await?;
    println!("second plan empty: {}", again.is_empty());
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}
