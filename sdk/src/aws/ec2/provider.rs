//! The EC2 providers: key pairs, security groups (rules owned exclusively), instances, AMIs, and snapshots
//! imported from S3. Reads are batched: one `Describe*` call per page for all resources of a kind, by id
//! filter (filters, unlike id lists, do not fail when one id is gone).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_ec2::primitives::Blob;
use aws_sdk_ec2::types::{
    ArchitectureValues, AttributeValue, BlockDeviceMapping, BootModeValues, DiskImageFormat, EbsBlockDevice, Filter,
    HttpTokensState, ImdsSupportValues, InstanceMetadataEndpointState, InstanceMetadataOptionsRequest,
    InstanceStateName, InstanceType, IpPermission, IpRange, Ipv6Range, ResourceType, SnapshotDiskContainer,
    SnapshotState, Tag, TagSpecification, TpmSupportValues, UserBucket, VolumeType,
};

use crate::address::Address;
use crate::attr::{Attr, Attrs};
use crate::aws::context::{
    AwsContext, Failure, Wait, all_tags, aws_error, bool_input, observed_tags, required, retry_on, str_input, sub,
    tag_changes, wait_for,
};
use crate::error::{Error, Result};
use crate::provider::{Observed, Provider, ReadRequest, StepContext};
use crate::state::ResourceState;

fn filter(name: &str, values: Vec<String>) -> Filter {
    Filter::builder().name(name).set_values(Some(values)).build()
}

fn ec2_tags(tags: &[(String, String)]) -> Vec<Tag> {
    tags.iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect()
}

fn tag_spec(kind: ResourceType, tags: &[(String, String)]) -> TagSpecification {
    TagSpecification::builder().resource_type(kind).set_tags(Some(ec2_tags(tags))).build()
}

fn tags_attr(tags: &[Tag]) -> Attr {
    observed_tags(tags.iter().map(|t| (t.key().unwrap_or_default(), t.value().unwrap_or_default())))
}

/// The `id` output recorded for a resource, for batched reads by id.
fn recorded_id(request: &ReadRequest<'_>) -> Option<String> {
    request.outputs.get("id").and_then(Attr::as_str).map(str::to_owned)
}

/// Applies tag changes between `prior` and `inputs` to an EC2 resource.
async fn update_tags(ctx: &AwsContext, step: &StepContext, id: &str, prior: &Attrs, inputs: &Attrs) -> Result<()> {
    let (add, remove) = tag_changes(prior, inputs);
    if !remove.is_empty() {
        let keys: Vec<Tag> = remove.iter().map(|k| Tag::builder().key(k).build()).collect();
        ctx.ec2
            .delete_tags()
            .resources(id)
            .set_tags(Some(keys))
            .send()
            .await
            .map_err(aws_error(&step.address, "DeleteTags"))?;
    }
    if !add.is_empty() {
        ctx.ec2
            .create_tags()
            .resources(id)
            .set_tags(Some(ec2_tags(&add)))
            .send()
            .await
            .map_err(aws_error(&step.address, "CreateTags"))?;
    }
    Ok(())
}

/// Matches batched results back to requests by their recorded id.
fn by_id<T>(requests: &[ReadRequest<'_>], mut found: BTreeMap<String, T>) -> Vec<Option<T>> {
    requests.iter().map(|r| recorded_id(r).and_then(|id| found.remove(&id))).collect()
}

fn ids(requests: &[ReadRequest<'_>]) -> Vec<String> {
    requests.iter().filter_map(recorded_id).collect()
}

// ---------------------------------------------------------------------------------------------------------
// Key pairs

/// Key pairs (`aws_key_pair`).
#[derive(Debug)]
pub(crate) struct KeyPairProvider(pub(crate) Arc<AwsContext>);

fn same_key(a: &str, b: &str) -> bool {
    let body = |k: &str| k.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    body(a) == body(b)
}

#[async_trait]
impl Provider for KeyPairProvider {
    async fn read(&self, _kind: &str, requests: &[ReadRequest<'_>]) -> Result<Vec<Option<Observed>>> {
        let ids = ids(requests);
        if ids.is_empty() {
            return Ok(requests.iter().map(|_| None).collect());
        }
        let out = self
            .0
            .ec2
            .describe_key_pairs()
            .filters(filter("key-pair-id", ids))
            .include_public_key(true)
            .send()
            .await
            .map_err(aws_error(requests[0].address, "DescribeKeyPairs"))?;
        let found: BTreeMap<String, _> =
            out.key_pairs().iter().filter_map(|k| k.key_pair_id().map(|id| (id.to_owned(), k.clone()))).collect();
        let pairs = by_id(requests, found);
        Ok(requests
            .iter()
            .zip(pairs)
            .map(|(r, pair)| {
                let pair = pair?;
                let mut inputs = r.inputs.clone();
                inputs.insert("key_name".into(), pair.key_name().map_or(Attr::Null, Attr::str));
                if let (Some(Attr::Str(configured)), Some(actual)) = (r.inputs.get("public_key"), pair.public_key())
                    && !same_key(configured, actual)
                {
                    inputs.insert("public_key".into(), Attr::str(actual));
                }
                inputs.insert("tags".into(), tags_attr(pair.tags()));
                // The private half never leaves this machine; AWS cannot return it, the state keeps it.
                Some(Observed { inputs, outputs: r.outputs.clone() })
            })
            .collect())
    }

    async fn create(&self, ctx: &StepContext, inputs: &Attrs) -> Result<Observed> {
        let name = required(&ctx.address, inputs, "key_name")?;
        let (public, private) = match str_input(inputs, "public_key") {
            Some(public) => (public.to_owned(), None),
            None => {
                let key = ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
                    .map_err(|e| Error::provider(&ctx.address, format!("cannot generate an ed25519 key: {e}")))?;
                let public = key
                    .public_key()
                    .to_openssh()
                    .map_err(|e| Error::provider(&ctx.address, format!("cannot encode the public key: {e}")))?;
                let private = key
                    .to_openssh(ssh_key::LineEnding::LF)
                    .map_err(|e| Error::provider(&ctx.address, format!("cannot encode the private key: {e}")))?;
                (format!("{public} paranix:{}", ctx.address), Some(private.to_string()))
            }
        };
        let import = || {
            self.0
                .ec2
                .import_key_pair()
                .key_name(name)
                .public_key_material(Blob::new(public.as_bytes()))
                .tag_specifications(tag_spec(ResourceType::KeyPair, &all_tags(ctx, inputs)))
                .send()
        };
        let imported = match import().await {
            Ok(out) => out,
            Err(e) if Failure::of(&e).is(&["InvalidKeyPair.Duplicate"]) => {
                // Left by an interrupted run of this resource (its private half is lost with it): replace it.
                let existing = self
                    .0
                    .ec2
                    .describe_key_pairs()
                    .filters(filter("key-name", vec![name.to_owned()]))
                    .send()
                    .await
                    .map_err(aws_error(&ctx.address, "DescribeKeyPairs"))?;
                let ours = existing.key_pairs().iter().any(|k| {
                    k.tags()
                        .iter()
                        .any(|t| t.key() == Some("paranix:address") && t.value() == Some(&ctx.address.to_string()))
                });
                if !ours {
                    return Err(Failure::of(&e).into_error(&ctx.address, "ImportKeyPair"));
                }
                self.0
                    .ec2
                    .delete_key_pair()
                    .key_name(name)
                    .send()
                    .await
                    .map_err(aws_error(&ctx.address, "DeleteKeyPair"))?;
                import().await.map_err(aws_error(&ctx.address, "ImportKeyPair"))?
            }
            Err(e) => return Err(Failure::of(&e).into_error(&ctx.address, "ImportKeyPair")),
        };
        let outputs = Attrs::from([
            ("fingerprint".into(), imported.key_fingerprint().map_or(Attr::Null, Attr::str)),
            // The pair's public key, generated or imported: what a host admits for the deploy login.
            ("generated_public_key".into(), Attr::Str(public.clone())),
            ("id".into(), imported.key_pair_id().map_or(Attr::Null, Attr::str)),
            ("private_key_openssh".into(), private.map_or(Attr::Null, Attr::Str)),
        ]);
        Ok(Observed { inputs: inputs.clone(), outputs })
    }

    async fn update(&self, ctx: &StepContext, prior: &ResourceState, inputs: &Attrs) -> Result<Observed> {
        let id = required(&ctx.address, &prior.outputs, "id")?;
        update_tags(&self.0, ctx, id, ctx.observed_or(&prior.inputs), inputs).await?;
        Ok(Observed { inputs: inputs.clone(), outputs: prior.outputs.clone() })
    }

    async fn delete(&self, ctx: &StepContext, prior: &ResourceState) -> Result<()> {
        let id = required(&ctx.address, &prior.outputs, "id")?;
        match self.0.ec2.delete_key_pair().key_pair_id(id).send().await {
            Ok(_) => Ok(()),
            Err(e) if Failure::of(&e).is(&["InvalidKeyPair.NotFound"]) => Ok(()),
            Err(e) => Err(Failure::of(&e).into_error(&ctx.address, "DeleteKeyPair")),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Security groups

/// Security groups (`aws_security_group`).
#[derive(Debug)]
pub(crate) struct SecurityGroupProvider(pub(crate) Arc<AwsContext>);

/// One allowed (protocol, ports, CIDR) with its description: the unit AWS authorizes and revokes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Atom {
    protocol: String,
    from: i64,
    to: i64,
    cidr: String,
    v6: bool,
    description: Option<String>,
}

fn atoms_of(rules: Option<&Attr>) -> Vec<Atom> {
    let mut atoms = Vec::new();
    for rule in rules.and_then(Attr::as_list).unwrap_or_default() {
        let Some(rule) = rule.as_map() else { continue };
        let protocol = rule.get("protocol").and_then(Attr::as_str).unwrap_or("-1").to_owned();
        let (from, to) = if protocol == "-1" {
            (0, 0)
        } else {
            (
                rule.get("from_port").and_then(Attr::as_int).unwrap_or(0),
                rule.get("to_port").and_then(Attr::as_int).unwrap_or(0),
            )
        };
        let description = rule.get("description").and_then(Attr::as_str).map(str::to_owned);
        for (field, v6) in [("cidr_blocks", false), ("ipv6_cidr_blocks", true)] {
            for cidr in rule.get(field).and_then(Attr::as_list).unwrap_or_default().iter().filter_map(Attr::as_str) {
                atoms.push(Atom {
                    protocol: protocol.clone(),
                    from,
                    to,
                    cidr: cidr.to_owned(),
                    v6,
                    description: description.clone(),
                });
            }
        }
    }
    atoms.sort();
    atoms.dedup();
    atoms
}

fn atoms_from_aws(permissions: &[IpPermission]) -> Vec<Atom> {
    let mut atoms = Vec::new();
    for p in permissions {
        let protocol = p.ip_protocol().unwrap_or("-1").to_owned();
        let (from, to) = if protocol == "-1" {
            (0, 0)
        } else {
            (i64::from(p.from_port().unwrap_or(0)), i64::from(p.to_port().unwrap_or(0)))
        };
        for r in p.ip_ranges() {
            let cidr = r.cidr_ip().unwrap_or_default().to_owned();
            atoms.push(Atom {
                protocol: protocol.clone(),
                from,
                to,
                cidr,
                v6: false,
                description: r.description().map(str::to_owned),
            });
        }
        for r in p.ipv6_ranges() {
            let cidr = r.cidr_ipv6().unwrap_or_default().to_owned();
            atoms.push(Atom {
                protocol: protocol.clone(),
                from,
                to,
                cidr,
                v6: true,
                description: r.description().map(str::to_owned),
            });
        }
    }
    atoms.sort();
    atoms.dedup();
    atoms
}

/// Rules as paranix writes them: one per (protocol, ports, description), CIDRs listed.
fn rules_attr(atoms: &[Atom]) -> Attr {
    type Key = (String, i64, i64, Option<String>);
    let mut groups: BTreeMap<Key, (Vec<Attr>, Vec<Attr>)> = BTreeMap::new();
    for a in atoms {
        let entry = groups.entry((a.protocol.clone(), a.from, a.to, a.description.clone())).or_default();
        if a.v6 { &mut entry.1 } else { &mut entry.0 }.push(Attr::str(&a.cidr));
    }
    Attr::List(
        groups
            .into_iter()
            .map(|((protocol, from, to, description), (v4, v6))| {
                Attr::Map(BTreeMap::from([
                    ("cidr_blocks".into(), Attr::List(v4)),
                    ("description".into(), description.map_or(Attr::Null, Attr::Str)),
                    ("from_port".into(), Attr::Int(from)),
                    ("ipv6_cidr_blocks".into(), Attr::List(v6)),
                    ("protocol".into(), Attr::Str(protocol)),
                    ("to_port".into(), Attr::Int(to)),
                ]))
            })
            .collect(),
    )
}

fn permissions(atoms: &[Atom]) -> Vec<IpPermission> {
    let mut groups: BTreeMap<(String, i64, i64), Vec<&Atom>> = BTreeMap::new();
    for a in atoms {
        groups.entry((a.protocol.clone(), a.from, a.to)).or_default().push(a);
    }
    groups
        .into_iter()
        .map(|((protocol, from, to), atoms)| {
            let mut p = IpPermission::builder().ip_protocol(&protocol);
            if protocol != "-1" {
                p = p.from_port(from as i32).to_port(to as i32);
            }
            for a in atoms {
                p = if a.v6 {
                    p.ipv6_ranges(
                        Ipv6Range::builder().cidr_ipv6(&a.cidr).set_description(a.description.clone()).build(),
                    )
                } else {
                    p.ip_ranges(IpRange::builder().cidr_ip(&a.cidr).set_description(a.description.clone()).build())
                };
            }
            p.build()
        })
        .collect()
}

impl SecurityGroupProvider {
    async fn describe(&self, address: &Address, ids: Vec<String>) -> Result<Vec<aws_sdk_ec2::types::SecurityGroup>> {
        let mut groups = Vec::new();
        let mut pages = self.0.ec2.describe_security_groups().filters(filter("group-id", ids)).into_paginator().send();
        while let Some(page) = pages.next().await {
            groups
                .extend(page.map_err(aws_error(address, "DescribeSecurityGroups"))?.security_groups().iter().cloned());
        }
        Ok(groups)
    }

    /// Makes the group's rules exactly the desired ones: revokes what is extra, authorizes what is missing.
    async fn sync_rules(
        &self,
        ctx: &StepContext,
        id: &str,
        current: &aws_sdk_ec2::types::SecurityGroup,
        inputs: &Attrs,
    ) -> Result<()> {
        let ec2 = &self.0.ec2;
        for (egress, field) in [(false, "ingress"), (true, "egress")] {
            let have = atoms_from_aws(if egress { current.ip_permissions_egress() } else { current.ip_permissions() });
            let want = atoms_of(inputs.get(field));
            let revoke: Vec<Atom> = have.iter().filter(|a| !want.contains(a)).cloned().collect();
            let add: Vec<Atom> = want.iter().filter(|a| !have.contains(a)).cloned().collect();
            // Revoke first: a rule whose description changed is revoked and authorized again.
            for (authorize, atoms) in [(false, revoke), (true, add)] {
                if atoms.is_empty() {
                    continue;
                }
                let perms = Some(permissions(&atoms));
                let (action, result) = match (egress, authorize) {
                    (false, false) => (
                        "RevokeSecurityGroupIngress",
                        ec2.revoke_security_group_ingress()
                            .group_id(id)
                            .set_ip_permissions(perms)
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(|e| Failure::of(&e)),
                    ),
                    (true, false) => (
                        "RevokeSecurityGroupEgress",
                        ec2.revoke_security_group_egress()
                            .group_id(id)
                            .set_ip_permissions(perms)
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(|e| Failure::of(&e)),
                    ),
                    (false, true) => (
                        "AuthorizeSecurityGroupIngress",
                        ec2.authorize_security_group_ingress()
                            .group_id(id)
                            .set_ip_permissions(perms)
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(|e| Failure::of(&e)),
                    ),
                    (true, true) => (
                        "AuthorizeSecurityGroupEgress",
                        ec2.authorize_security_group_egress()
                            .group_id(id)
                            .set_ip_permissions(perms)
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(|e| Failure::of(&e)),
                    ),
                };
                result.map_err(|f| f.into_error(&ctx.address, action))?;
            }
        }
        Ok(())
    }

    fn outputs(&self, group: &aws_sdk_ec2::types::SecurityGroup) -> Attrs {
        let id = group.group_id().unwrap_or_default();
        let owner = group.owner_id().unwrap_or_default();
        Attrs::from([
            ("arn".into(), Attr::str(format!("arn:aws:ec2:{}:{owner}:security-group/{id}", self.0.region()))),
            ("id".into(), Attr::str(id)),
        ])
    }
}

#[async_trait]
impl Provider for SecurityGroupProvider {
    async fn read(&self, _kind: &str, requests: &[ReadRequest<'_>]) -> Result<Vec<Option<Observed>>> {
        let ids = ids(requests);
        if ids.is_empty() {
            return Ok(requests.iter().map(|_| None).collect());
        }
        let groups = self.describe(requests[0].address, ids).await?;
        let found = groups.into_iter().filter_map(|g| g.group_id().map(|id| (id.to_owned(), g.clone()))).collect();
        Ok(requests
            .iter()
            .zip(by_id(requests, found))
            .map(|(r, g)| {
                let g = g?;
                let vpc = if r.inputs.get("vpc_id").is_some_and(|v| *v != Attr::Null) {
                    g.vpc_id().map_or(Attr::Null, Attr::str)
                } else {
                    Attr::Null
                };
                let inputs = Attrs::from([
                    ("description".into(), g.description().map_or(Attr::Null, Attr::str)),
                    ("egress".into(), rules_attr(&atoms_from_aws(g.ip_permissions_egress()))),
                    ("ingress".into(), rules_attr(&atoms_from_aws(g.ip_permissions()))),
                    ("name".into(), g.group_name().map_or(Attr::Null, Attr::str)),
                    ("tags".into(), tags_attr(g.tags())),
                    ("vpc_id".into(), vpc),
                ]);
                Some(Observed { inputs, outputs: self.outputs(&g) })
            })
            .collect())
    }

    async fn create(&self, ctx: &StepContext, inputs: &Attrs) -> Result<Observed> {
        let name = required(&ctx.address, inputs, "name")?;
        let created = self
            .0
            .ec2
            .create_security_group()
            .group_name(name)
            .description(str_input(inputs, "description").unwrap_or("Managed by paranix"))
            .set_vpc_id(str_input(inputs, "vpc_id").map(str::to_owned))
            .tag_specifications(tag_spec(ResourceType::SecurityGroup, &all_tags(ctx, inputs)))
            .send()
            .await;
        let id = match created {
            Ok(out) => out.group_id().unwrap_or_default().to_owned(),
            Err(e) if Failure::of(&e).is(&["InvalidGroup.Duplicate"]) => {
                // Adopt it only if an interrupted run of this resource made it.
                let found = self
                    .0
                    .ec2
                    .describe_security_groups()
                    .filters(filter("group-name", vec![name.to_owned()]))
                    .filters(filter("tag:paranix:address", vec![ctx.address.to_string()]))
                    .send()
                    .await
                    .map_err(aws_error(&ctx.address, "DescribeSecurityGroups"))?;
                match found.security_groups().first().and_then(|g| g.group_id()) {
                    Some(id) => id.to_owned(),
                    None => return Err(Failure::of(&e).into_error(&ctx.address, "CreateSecurityGroup")),
                }
            }
            Err(e) => return Err(Failure::of(&e).into_error(&ctx.address, "CreateSecurityGroup")),
        };
        let group = self.describe(&ctx.address, vec![id.clone()]).await?.pop().ok_or_else(|| {
            Error::provider(&ctx.address, format!("security group {id} vanished right after it was created"))
        })?;
        self.sync_rules(ctx, &id, &group, inputs).await?;
        Ok(Observed { inputs: inputs.clone(), outputs: self.outputs(&group) })
    }

    async fn update(&self, ctx: &StepContext, prior: &ResourceState, inputs: &Attrs) -> Result<Observed> {
        let id = required(&ctx.address, &prior.outputs, "id")?;
        let group = self
            .describe(&ctx.address, vec![id.to_owned()])
            .await?
            .pop()
            .ok_or_else(|| Error::provider(&ctx.address, format!("security group {id} no longer exists")))?;
        self.sync_rules(ctx, id, &group, inputs).await?;
        update_tags(&self.0, ctx, id, ctx.observed_or(&prior.inputs), inputs).await?;
        Ok(Observed { inputs: inputs.clone(), outputs: prior.outputs.clone() })
    }

    async fn delete(&self, ctx: &StepContext, prior: &ResourceState) -> Result<()> {
        let id = required(&ctx.address, &prior.outputs, "id")?;
        // An instance that was just terminated still holds the group for a while.
        let result = retry_on(&["DependencyViolation"], Duration::from_secs(300), || async {
            self.0.ec2.delete_security_group().group_id(id).send().await.map(|_| ()).map_err(|e| Failure::of(&e))
        })
        .await;
        match result {
            Ok(()) => Ok(()),
            Err(f) if f.is(&["InvalidGroup.NotFound"]) => Ok(()),
            Err(f) => Err(f.into_error(&ctx.address, "DeleteSecurityGroup")),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Instances

/// Instances (`aws_instance`).
#[derive(Debug)]
pub(crate) struct InstanceProvider(pub(crate) Arc<AwsContext>);

struct Seen {
    instance: aws_sdk_ec2::types::Instance,
    owner: String,
}

impl InstanceProvider {
    async fn describe(&self, address: &Address, ids: Vec<String>) -> Result<Vec<Seen>> {
        let mut seen = Vec::new();
        let mut pages = self.0.ec2.describe_instances().filters(filter("instance-id", ids)).into_paginator().send();
        while let Some(page) = pages.next().await {
            for reservation in page.map_err(aws_error(address, "DescribeInstances"))?.reservations() {
                let owner = reservation.owner_id().unwrap_or_default().to_owned();
                for i in reservation.instances() {
                    let gone = matches!(
                        i.state().and_then(|s| s.name()),
                        Some(InstanceStateName::Terminated | InstanceStateName::ShuttingDown)
                    );
                    if !gone {
                        seen.push(Seen { instance: i.clone(), owner: owner.clone() });
                    }
                }
            }
        }
        Ok(seen)
    }

    /// Waits for the host key block NixOS prints on the serial console and returns its ed25519 key.
    async fn console_host_key(&self, ctx: &StepContext, id: &str, instance_type: &str) -> Result<String> {
        // The console shows up a minute or two after boot on AWS; NixOS prints the keys once sshd's keys
        // exist. Ten minutes covers slow boots. `Latest` (the live serial console) exists on Nitro instances
        // only; Xen instances (t2, ...) answer with the output buffered after the last state change.
        let latest = crate::aws::catalog::is_nitro(instance_type);
        let wait = Wait::new(self.0.poll_interval().max(Duration::from_millis(200)), Duration::from_secs(600));
        wait_for(ctx, &format!("the SSH host key on {id}'s console"), wait, || async {
            let out = self
                .0
                .ec2
                .get_console_output()
                .instance_id(id)
                .latest(latest)
                .send()
                .await
                .map_err(aws_error(&ctx.address, "GetConsoleOutput"))?;
            let text = out.output().map(decode_console).unwrap_or_default();
            Ok(host_key_from_console(&text))
        })
        .await
    }

    fn outputs(&self, seen: &Seen) -> Attrs {
        let i = &seen.instance;
        let id = i.instance_id().unwrap_or_default();
        let opt = |v: Option<&str>| v.filter(|s| !s.is_empty()).map_or(Attr::Null, Attr::str);
        Attrs::from([
            ("arn".into(), Attr::str(format!("arn:aws:ec2:{}:{}:instance/{id}", self.0.region(), seen.owner))),
            ("id".into(), Attr::str(id)),
            ("private_ip".into(), opt(i.private_ip_address())),
            ("public_dns".into(), opt(i.public_dns_name())),
            ("public_ip".into(), opt(i.public_ip_address())),
        ])
    }

    async fn wait_state(&self, ctx: &StepContext, id: &str, want: InstanceStateName) -> Result<Seen> {
        let what = format!("instance {id} to be {}", want.as_str());
        wait_for(ctx, &what, Wait::new(self.0.poll_interval(), Duration::from_secs(600)), || async {
            let mut seen = self.describe(&ctx.address, vec![id.to_owned()]).await?;
            Ok(seen.pop().filter(|s| s.instance.state().and_then(|st| st.name()) == Some(&want)))
        })
        .await
    }

    /// The root volume's id and attributes.
    async fn root_volume(
        &self,
        address: &Address,
        seen: &[&Seen],
    ) -> Result<BTreeMap<String, aws_sdk_ec2::types::Volume>> {
        let ids: Vec<String> = seen
            .iter()
            .filter_map(|s| {
                let root = s.instance.root_device_name()?;
                s.instance
                    .block_device_mappings()
                    .iter()
                    .find(|m| m.device_name() == Some(root))?
                    .ebs()?
                    .volume_id()
                    .map(str::to_owned)
            })
            .collect();
        if ids.is_empty() {
            return Ok(BTreeMap::new());
        }
        let out = self
            .0
            .ec2
            .describe_volumes()
            .filters(filter("volume-id", ids))
            .send()
            .await
            .map_err(aws_error(address, "DescribeVolumes"))?;
        Ok(out.volumes().iter().filter_map(|v| v.volume_id().map(|id| (id.to_owned(), v.clone()))).collect())
    }

    fn observed_inputs(
        &self,
        prior: &Attrs,
        seen: &Seen,
        volumes: &BTreeMap<String, aws_sdk_ec2::types::Volume>,
    ) -> Attrs {
        let i = &seen.instance;
        let mut inputs = prior.clone();
        inputs.insert("ami".into(), i.image_id().map_or(Attr::Null, Attr::str));
        inputs.insert("instance_type".into(), i.instance_type().map_or(Attr::Null, |t| Attr::str(t.as_str())));
        inputs.insert("key_name".into(), i.key_name().map_or(Attr::Null, Attr::str));
        if let Some(m) = i.metadata_options() {
            inputs.insert(
                "metadata_options".into(),
                Attr::Map(BTreeMap::from([
                    ("http_endpoint".into(), m.http_endpoint().map_or(Attr::str("enabled"), |e| Attr::str(e.as_str()))),
                    (
                        "http_put_response_hop_limit".into(),
                        Attr::Int(i64::from(m.http_put_response_hop_limit().unwrap_or(1))),
                    ),
                    ("http_tokens".into(), m.http_tokens().map_or(Attr::str("optional"), |t| Attr::str(t.as_str()))),
                ])),
            );
        }
        let root = i
            .root_device_name()
            .and_then(|root| i.block_device_mappings().iter().find(|m| m.device_name() == Some(root)));
        if let Some(volume) = root.and_then(|m| m.ebs()).and_then(|e| e.volume_id()).and_then(|id| volumes.get(id)) {
            let delete = root.and_then(|m| m.ebs()).and_then(|e| e.delete_on_termination()).unwrap_or(true);
            inputs.insert(
                "root_block_device".into(),
                Attr::Map(BTreeMap::from([
                    ("delete_on_termination".into(), Attr::Bool(delete)),
                    ("encrypted".into(), Attr::Bool(volume.encrypted().unwrap_or(false))),
                    ("volume_size".into(), Attr::Int(i64::from(volume.size().unwrap_or(0)))),
                    ("volume_type".into(), volume.volume_type().map_or(Attr::Null, |t| Attr::str(t.as_str()))),
                ])),
            );
        }
        if prior.get("subnet_id").is_some_and(|s| *s != Attr::Null) {
            inputs.insert("subnet_id".into(), i.subnet_id().map_or(Attr::Null, Attr::str));
        }
        inputs.insert("tags".into(), tags_attr(i.tags()));
        let mut groups: Vec<Attr> = i.security_groups().iter().filter_map(|g| g.group_id()).map(Attr::str).collect();
        groups.sort_by(crate::schema::sort_key);
        inputs.insert("vpc_security_group_ids".into(), Attr::List(groups));
        inputs
    }
}

fn strings(inputs: &Attrs, field: &str) -> Vec<String> {
    inputs
        .get(field)
        .and_then(Attr::as_list)
        .unwrap_or_default()
        .iter()
        .filter_map(Attr::as_str)
        .map(str::to_owned)
        .collect()
}

#[async_trait]
impl Provider for InstanceProvider {
    async fn read(&self, _kind: &str, requests: &[ReadRequest<'_>]) -> Result<Vec<Option<Observed>>> {
        let ids = ids(requests);
        if ids.is_empty() {
            return Ok(requests.iter().map(|_| None).collect());
        }
        let address = requests[0].address;
        let seen = self.describe(address, ids).await?;
        let volumes = self.root_volume(address, &seen.iter().collect::<Vec<_>>()).await?;
        let found = seen
            .into_iter()
            .filter_map(|s| {
                let id = s.instance.instance_id()?.to_owned();
                Some((id, s))
            })
            .collect();
        Ok(requests
            .iter()
            .zip(by_id(requests, found))
            .map(|(r, s)| {
                s.map(|s| Observed {
                    inputs: self.observed_inputs(r.inputs, &s, &volumes),
                    outputs: keep_console_key(self.outputs(&s), r.outputs),
                })
            })
            .collect())
    }

    async fn create(&self, ctx: &StepContext, inputs: &Attrs) -> Result<Observed> {
        let address = &ctx.address;
        let ami = required(address, inputs, "ami")?;
        let image =
            self.0.ec2.describe_images().image_ids(ami).send().await.map_err(aws_error(address, "DescribeImages"))?;
        let root_device = image.images().first().and_then(|i| i.root_device_name()).unwrap_or("/dev/xvda").to_owned();
        let root = sub(inputs, "root_block_device");
        let root_get = |k: &str| root.and_then(|m| m.get(k));
        let ebs = EbsBlockDevice::builder()
            .set_volume_size(root_get("volume_size").and_then(Attr::as_int).map(|v| v as i32))
            .set_volume_type(root_get("volume_type").and_then(Attr::as_str).map(VolumeType::from))
            .encrypted(root_get("encrypted").and_then(Attr::as_bool).unwrap_or(true))
            .delete_on_termination(root_get("delete_on_termination").and_then(Attr::as_bool).unwrap_or(true))
            .build();
        let md = sub(inputs, "metadata_options");
        let md_get = |k: &str| md.and_then(|m| m.get(k));
        let metadata = InstanceMetadataOptionsRequest::builder()
            .http_tokens(HttpTokensState::from(md_get("http_tokens").and_then(Attr::as_str).unwrap_or("required")))
            .http_endpoint(InstanceMetadataEndpointState::from(
                md_get("http_endpoint").and_then(Attr::as_str).unwrap_or("enabled"),
            ))
            .http_put_response_hop_limit(
                md_get("http_put_response_hop_limit").and_then(Attr::as_int).unwrap_or(1) as i32
            )
            .build();
        let tags = all_tags(ctx, inputs);
        let user_data = str_input(inputs, "user_data").map(|u| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(u)
        });
        let groups = strings(inputs, "vpc_security_group_ids");
        let out = self
            .0
            .ec2
            .run_instances()
            .image_id(ami)
            .instance_type(InstanceType::from(required(address, inputs, "instance_type")?))
            .min_count(1)
            .max_count(1)
            // The same token after a crash returns the instance the first attempt launched.
            .client_token(ctx.idempotency_token())
            .set_key_name(str_input(inputs, "key_name").map(str::to_owned))
            .set_security_group_ids((!groups.is_empty()).then_some(groups))
            .set_subnet_id(str_input(inputs, "subnet_id").map(str::to_owned))
            .block_device_mappings(BlockDeviceMapping::builder().device_name(root_device).ebs(ebs).build())
            .metadata_options(metadata)
            .set_user_data(user_data)
            .tag_specifications(tag_spec(ResourceType::Instance, &tags))
            .tag_specifications(tag_spec(ResourceType::Volume, &tags))
            .send()
            .await
            .map_err(aws_error(address, "RunInstances"))?;
        let id = out
            .instances()
            .first()
            .and_then(|i| i.instance_id())
            .ok_or_else(|| Error::provider(address, "RunInstances returned no instance"))?
            .to_owned();
        let seen = self.wait_state(ctx, &id, InstanceStateName::Running).await?;
        let mut outputs = self.outputs(&seen);
        if bool_input(inputs, "console_host_key") == Some(true) {
            let instance_type = str_input(inputs, "instance_type").unwrap_or_default();
            outputs.insert("ssh_host_key".into(), Attr::Str(self.console_host_key(ctx, &id, instance_type).await?));
        }
        Ok(Observed { inputs: inputs.clone(), outputs })
    }

    async fn update(&self, ctx: &StepContext, prior: &ResourceState, inputs: &Attrs) -> Result<Observed> {
        let address = &ctx.address;
        let id = required(address, &prior.outputs, "id")?;
        let ec2 = &self.0.ec2;
        let changed = |f: &str| ctx.changes(f);
        if changed("instance_type") {
            // The type of a running instance cannot change: stop, modify, start.
            ec2.stop_instances().instance_ids(id).send().await.map_err(aws_error(address, "StopInstances"))?;
            self.wait_state(ctx, id, InstanceStateName::Stopped).await?;
            ec2.modify_instance_attribute()
                .instance_id(id)
                .instance_type(AttributeValue::builder().value(required(address, inputs, "instance_type")?).build())
                .send()
                .await
                .map_err(aws_error(address, "ModifyInstanceAttribute"))?;
            ec2.start_instances().instance_ids(id).send().await.map_err(aws_error(address, "StartInstances"))?;
            self.wait_state(ctx, id, InstanceStateName::Running).await?;
        }
        if changed("vpc_security_group_ids") {
            ec2.modify_instance_attribute()
                .instance_id(id)
                .set_groups(Some(strings(inputs, "vpc_security_group_ids")))
                .send()
                .await
                .map_err(aws_error(address, "ModifyInstanceAttribute"))?;
        }
        if changed("metadata_options") {
            let md = sub(inputs, "metadata_options");
            let md_get = |k: &str| md.and_then(|m| m.get(k));
            ec2.modify_instance_metadata_options()
                .instance_id(id)
                .http_tokens(HttpTokensState::from(md_get("http_tokens").and_then(Attr::as_str).unwrap_or("required")))
                .http_endpoint(InstanceMetadataEndpointState::from(
                    md_get("http_endpoint").and_then(Attr::as_str).unwrap_or("enabled"),
                ))
                .http_put_response_hop_limit(
                    md_get("http_put_response_hop_limit").and_then(Attr::as_int).unwrap_or(1) as i32
                )
                .send()
                .await
                .map_err(aws_error(address, "ModifyInstanceMetadataOptions"))?;
        }
        if changed("root_block_device") {
            let seen = self.describe(address, vec![id.to_owned()]).await?;
            let volumes = self.root_volume(address, &seen.iter().collect::<Vec<_>>()).await?;
            let root = sub(inputs, "root_block_device");
            if let Some(volume_id) = volumes.keys().next() {
                ec2.modify_volume()
                    .volume_id(volume_id)
                    .set_size(root.and_then(|m| m.get("volume_size")).and_then(Attr::as_int).map(|v| v as i32))
                    .set_volume_type(
                        root.and_then(|m| m.get("volume_type")).and_then(Attr::as_str).map(VolumeType::from),
                    )
                    .send()
                    .await
                    .map_err(aws_error(address, "ModifyVolume"))?;
            }
        }
        if changed("tags") {
            update_tags(&self.0, ctx, id, ctx.observed_or(&prior.inputs), inputs).await?;
        }
        let seen = self
            .describe(address, vec![id.to_owned()])
            .await?
            .pop()
            .ok_or_else(|| Error::provider(address, format!("instance {id} disappeared during the update")))?;
        Ok(Observed { inputs: inputs.clone(), outputs: keep_console_key(self.outputs(&seen), &prior.outputs) })
    }

    async fn delete(&self, ctx: &StepContext, prior: &ResourceState) -> Result<()> {
        let id = required(&ctx.address, &prior.outputs, "id")?;
        match self.0.ec2.terminate_instances().instance_ids(id).send().await {
            Ok(_) => {}
            Err(e) if Failure::of(&e).is(&["InvalidInstanceID.NotFound"]) => return Ok(()),
            Err(e) => return Err(Failure::of(&e).into_error(&ctx.address, "TerminateInstances")),
        }
        // Wait until it is gone, so the security group and key pair it uses can be deleted next.
        wait_for(
            ctx,
            &format!("instance {id} to terminate"),
            Wait::new(self.0.poll_interval(), Duration::from_secs(600)),
            || async { Ok(self.describe(&ctx.address, vec![id.to_owned()]).await?.is_empty().then_some(())) },
        )
        .await
    }
}

/// The host key read from the console at launch, carried over from the recorded outputs: a describe does not
/// return it, and reading the console again would trust whatever the instance prints now (the key an intruder
/// put in place, say) over the key pinned at first boot.
fn keep_console_key(mut outputs: Attrs, recorded: &Attrs) -> Attrs {
    if let Some(key) = recorded.get("ssh_host_key").filter(|k| k.is_known()) {
        outputs.insert("ssh_host_key".into(), key.clone());
    }
    outputs
}

/// Console output is base64 (as AWS returns it); anything that is not is taken as text.
fn decode_console(output: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(output.trim())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_else(|_| output.to_owned())
}

/// The ed25519 key of the last complete block between `-----BEGIN SSH HOST KEY KEYS-----` and
/// `-----END SSH HOST KEY KEYS-----` (cloud-init's format, which common/default.nix's `paranix-print-host-key`
/// prints at every boot). Serial consoles end lines with CRLF. A block cut short (a `BEGIN` with no `END`
/// before the next `BEGIN`, as a printer that died half-way leaves) is ignored; the last complete block is the
/// newest boot's.
pub(crate) fn host_key_from_console(text: &str) -> Option<String> {
    const BEGIN: &str = "-----BEGIN SSH HOST KEY KEYS-----";
    const END: &str = "-----END SSH HOST KEY KEYS-----";
    text.match_indices(BEGIN)
        .filter_map(|(start, _)| {
            let block = &text[start + BEGIN.len()..];
            let block = &block[..block.find(END)?];
            (!block.contains(BEGIN)).then_some(block)
        })
        .filter_map(|block| {
            block.lines().map(|l| l.trim_end_matches('\r').trim()).find(|l| l.starts_with("ssh-ed25519 ")).map(|l| {
                let parts: Vec<&str> = l.split_whitespace().take(2).collect();
                parts.join(" ")
            })
        })
        .last()
}

#[cfg(test)]
mod tests {
    use super::host_key_from_console;

    #[test]
    fn the_host_key_block_is_found_in_crlf_console_output() {
        let console = "boot...\r\n-----BEGIN SSH HOST KEY KEYS-----\r\nssh-rsa AAAAB3 root@h\r\n\
                       ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample root@h\r\n-----END SSH HOST KEY KEYS-----\r\n";
        assert_eq!(host_key_from_console(console).as_deref(), Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExample"));
        assert_eq!(host_key_from_console("no keys here"), None);
    }

    #[test]
    fn a_block_cut_short_is_ignored_and_the_last_complete_block_wins() {
        // nixpkgs' print-host-key dies after BEGIN when no /etc/ssh/ssh_host_*_key.pub exists (its KEYS loop has
        // no `|| true`); a later boot's complete block is the one that counts.
        let console = "-----BEGIN SSH HOST KEY KEYS-----\r\n\
                       -----BEGIN SSH HOST KEY KEYS-----\r\nssh-ed25519 AAAAC3First h\r\n-----END SSH HOST KEY KEYS-----\r\n\
                       reboot\r\n-----BEGIN SSH HOST KEY KEYS-----\r\nssh-ed25519 AAAAC3Second h\r\n\
                       -----END SSH HOST KEY KEYS-----\r\n-----BEGIN SSH HOST KEY KEYS-----\r\nssh-ed25519 AAAAC3Cut h\r\n";
        assert_eq!(host_key_from_console(console).as_deref(), Some("ssh-ed25519 AAAAC3Second"));
        assert_eq!(host_key_from_console("-----BEGIN SSH HOST KEY KEYS-----\r\nssh-ed25519 AAAAC3Cut h\r\n"), None);
    }
}

// ---------------------------------------------------------------------------------------------------------
// Images

/// AMIs (`aws_ami`).
#[derive(Debug)]
pub(crate) struct ImageProvider(pub(crate) Arc<AwsContext>);

impl ImageProvider {
    async fn describe(&self, address: &Address, filters: Vec<Filter>) -> Result<Vec<aws_sdk_ec2::types::Image>> {
        let out = self
            .0
            .ec2
            .describe_images()
            .owners("self")
            .set_filters(Some(filters))
            .send()
            .await
            .map_err(aws_error(address, "DescribeImages"))?;
        Ok(out.images().to_vec())
    }

    fn outputs(&self, image: &aws_sdk_ec2::types::Image) -> Attrs {
        let id = image.image_id().unwrap_or_default();
        Attrs::from([
            ("arn".into(), Attr::str(format!("arn:aws:ec2:{}::image/{id}", self.0.region()))),
            ("id".into(), Attr::str(id)),
        ])
    }

    async fn wait_available(&self, ctx: &StepContext, id: &str) -> Result<aws_sdk_ec2::types::Image> {
        wait_for(
            ctx,
            &format!("image {id} to be available"),
            Wait::new(self.0.poll_interval(), Duration::from_secs(1800)),
            || async {
                let images = self.describe(&ctx.address, vec![filter("image-id", vec![id.to_owned()])]).await?;
                match images.into_iter().next() {
                    Some(i) if i.state().is_some_and(|s| s.as_str() == "failed") => {
                        Err(Error::provider(&ctx.address, format!("image {id} failed: {:?}", i.state_reason())))
                    }
                    Some(i) if i.state().is_none_or(|s| s.as_str() == "available") => Ok(Some(i)),
                    _ => Ok(None),
                }
            },
        )
        .await
    }
}

#[async_trait]
impl Provider for ImageProvider {
    async fn read(&self, _kind: &str, requests: &[ReadRequest<'_>]) -> Result<Vec<Option<Observed>>> {
        let ids = ids(requests);
        if ids.is_empty() {
            return Ok(requests.iter().map(|_| None).collect());
        }
        let images = self.describe(requests[0].address, vec![filter("image-id", ids)]).await?;
        let found = images.into_iter().filter_map(|i| i.image_id().map(|id| (id.to_owned(), i.clone()))).collect();
        Ok(requests
            .iter()
            .zip(by_id(requests, found))
            .map(|(r, image)| {
                let image = image?;
                let prior = r.inputs;
                let keep = |field: &str| prior.get(field).cloned().unwrap_or(Attr::Null);
                let or_prior = |v: Option<&str>, field: &str| v.map_or_else(|| keep(field), Attr::str);
                let mut inputs = prior.clone();
                inputs
                    .insert("architecture".into(), or_prior(image.architecture().map(|a| a.as_str()), "architecture"));
                inputs.insert("boot_mode".into(), or_prior(image.boot_mode().map(|b| b.as_str()), "boot_mode"));
                inputs.insert("description".into(), image.description().map_or(Attr::Null, Attr::str));
                inputs
                    .insert("ena_support".into(), image.ena_support().map_or_else(|| keep("ena_support"), Attr::Bool));
                inputs
                    .insert("imds_support".into(), or_prior(image.imds_support().map(|i| i.as_str()), "imds_support"));
                inputs.insert("name".into(), or_prior(image.name(), "name"));
                inputs.insert("root_device_name".into(), or_prior(image.root_device_name(), "root_device_name"));
                inputs.insert("sriov_net_support".into(), or_prior(image.sriov_net_support(), "sriov_net_support"));
                inputs.insert("tags".into(), tags_attr(image.tags()));
                let root = image.block_device_mappings().iter().find(|m| m.device_name() == image.root_device_name());
                if let Some(ebs) = root.and_then(|m| m.ebs()) {
                    inputs.insert("snapshot_id".into(), or_prior(ebs.snapshot_id(), "snapshot_id"));
                }
                Some(Observed { inputs, outputs: self.outputs(&image) })
            })
            .collect())
    }

    async fn create(&self, ctx: &StepContext, inputs: &Attrs) -> Result<Observed> {
        let address = &ctx.address;
        let name = required(address, inputs, "name")?;
        let block = sub(inputs, "block_device");
        let get = |k: &str| block.and_then(|m| m.get(k));
        let device = get("device_name").and_then(Attr::as_str).unwrap_or("/dev/xvda");
        let ebs = EbsBlockDevice::builder()
            .snapshot_id(required(address, inputs, "snapshot_id")?)
            .set_volume_size(get("volume_size").and_then(Attr::as_int).map(|v| v as i32))
            .set_volume_type(get("volume_type").and_then(Attr::as_str).map(VolumeType::from))
            .delete_on_termination(get("delete_on_termination").and_then(Attr::as_bool).unwrap_or(true))
            .build();
        let registered = self
            .0
            .ec2
            .register_image()
            .name(name)
            .set_description(str_input(inputs, "description").map(str::to_owned))
            .architecture(ArchitectureValues::from(str_input(inputs, "architecture").unwrap_or("x86_64")))
            .root_device_name(str_input(inputs, "root_device_name").unwrap_or(device))
            .virtualization_type(str_input(inputs, "virtualization_type").unwrap_or("hvm"))
            .set_ena_support(bool_input(inputs, "ena_support"))
            .set_sriov_net_support(str_input(inputs, "sriov_net_support").map(str::to_owned))
            .set_boot_mode(str_input(inputs, "boot_mode").map(BootModeValues::from))
            .set_imds_support(str_input(inputs, "imds_support").map(ImdsSupportValues::from))
            .set_tpm_support(str_input(inputs, "tpm_support").map(TpmSupportValues::from))
            .block_device_mappings(BlockDeviceMapping::builder().device_name(device).ebs(ebs).build())
            .tag_specifications(tag_spec(ResourceType::Image, &all_tags(ctx, inputs)))
            .send()
            .await;
        let id = match registered {
            Ok(out) => out.image_id().unwrap_or_default().to_owned(),
            Err(e) if Failure::of(&e).is(&["InvalidAMIName.Duplicate"]) => {
                let mine = self
                    .describe(
                        address,
                        vec![
                            filter("name", vec![name.to_owned()]),
                            filter("tag:paranix:address", vec![address.to_string()]),
                        ],
                    )
                    .await?;
                match mine.first().and_then(|i| i.image_id()) {
                    Some(id) => id.to_owned(),
                    None => return Err(Failure::of(&e).into_error(address, "RegisterImage")),
                }
            }
            Err(e) => return Err(Failure::of(&e).into_error(address, "RegisterImage")),
        };
        let image = self.wait_available(ctx, &id).await?;
        Ok(Observed { inputs: inputs.clone(), outputs: self.outputs(&image) })
    }

    async fn update(&self, ctx: &StepContext, prior: &ResourceState, inputs: &Attrs) -> Result<Observed> {
        let id = required(&ctx.address, &prior.outputs, "id")?;
        if ctx.changes("description") {
            self.0
                .ec2
                .modify_image_attribute()
                .image_id(id)
                .description(
                    AttributeValue::builder().value(str_input(inputs, "description").unwrap_or_default()).build(),
                )
                .send()
                .await
                .map_err(aws_error(&ctx.address, "ModifyImageAttribute"))?;
        }
        update_tags(&self.0, ctx, id, ctx.observed_or(&prior.inputs), inputs).await?;
        Ok(Observed { inputs: inputs.clone(), outputs: prior.outputs.clone() })
    }

    async fn delete(&self, ctx: &StepContext, prior: &ResourceState) -> Result<()> {
        let id = required(&ctx.address, &prior.outputs, "id")?;
        // The snapshot behind the image is its own resource in the stack and is deleted after this.
        match self.0.ec2.deregister_image().image_id(id).send().await {
            Ok(_) => Ok(()),
            Err(e) if Failure::of(&e).is(&["InvalidAMIID.NotFound", "InvalidAMIID.Unavailable"]) => Ok(()),
            Err(e) => Err(Failure::of(&e).into_error(&ctx.address, "DeregisterImage")),
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// Snapshots (shared by imports and EBS direct uploads)

/// Reads snapshots by recorded id: tags (and, when the snapshot carries the configured description, the
/// description) from AWS, the rest as recorded. An imported snapshot's description is VM Import's own
/// ("Created by AWS-VMImport service for ..."); the configured one belongs to the import task.
pub(crate) async fn read_snapshots(
    ctx: &AwsContext,
    requests: &[ReadRequest<'_>],
    description_on_snapshot: bool,
) -> Result<Vec<Option<Observed>>> {
    let ids = ids(requests);
    if ids.is_empty() {
        return Ok(requests.iter().map(|_| None).collect());
    }
    let mut snapshots = BTreeMap::new();
    let mut pages =
        ctx.ec2.describe_snapshots().owner_ids("self").filters(filter("snapshot-id", ids)).into_paginator().send();
    while let Some(page) = pages.next().await {
        for s in page.map_err(aws_error(requests[0].address, "DescribeSnapshots"))?.snapshots() {
            if let Some(id) = s.snapshot_id() {
                snapshots.insert(id.to_owned(), s.clone());
            }
        }
    }
    Ok(requests
        .iter()
        .zip(by_id(requests, snapshots))
        .map(|(r, s)| {
            let s = s?;
            let mut inputs = r.inputs.clone();
            inputs.insert("tags".into(), tags_attr(s.tags()));
            if description_on_snapshot && r.inputs.get("description").is_some_and(|d| *d != Attr::Null) {
                inputs.insert("description".into(), s.description().map_or(Attr::Null, Attr::str));
            }
            let mut outputs = r.outputs.clone();
            if let Some(size) = s.volume_size()
                && outputs.contains_key("volume_size")
            {
                outputs.insert("volume_size".into(), Attr::Int(i64::from(size)));
            }
            Some(Observed { inputs, outputs })
        })
        .collect())
}

pub(crate) fn snapshot_arn(region: &str, id: &str) -> Attr {
    Attr::str(format!("arn:aws:ec2:{region}::snapshot/{id}"))
}

/// Deletes a snapshot; one already gone is fine.
pub(crate) async fn delete_snapshot(ctx: &AwsContext, step: &StepContext, prior: &ResourceState) -> Result<()> {
    let id = required(&step.address, &prior.outputs, "id")?;
    match ctx.ec2.delete_snapshot().snapshot_id(id).send().await {
        Ok(_) => Ok(()),
        Err(e) if Failure::of(&e).is(&["InvalidSnapshot.NotFound"]) => Ok(()),
        Err(e) => Err(Failure::of(&e).into_error(&step.address, "DeleteSnapshot")),
    }
}

/// Waits until a snapshot is `completed`, reporting its progress.
pub(crate) async fn wait_snapshot(
    ctx: &AwsContext,
    step: &StepContext,
    id: &str,
) -> Result<aws_sdk_ec2::types::Snapshot> {
    wait_for(
        step,
        &format!("snapshot {id} to complete"),
        Wait::new(ctx.poll_interval(), Duration::from_secs(6000)),
        || async {
            let out = ctx
                .ec2
                .describe_snapshots()
                .owner_ids("self")
                .filters(filter("snapshot-id", vec![id.to_owned()]))
                .send()
                .await
                .map_err(aws_error(&step.address, "DescribeSnapshots"))?;
            match out.snapshots().first() {
                Some(s) if s.state() == Some(&SnapshotState::Error) => Err(Error::provider(
                    &step.address,
                    format!("snapshot {id} failed: {}", s.state_message().unwrap_or("no message")),
                )),
                Some(s) if s.state() == Some(&SnapshotState::Completed) => Ok(Some(s.clone())),
                _ => Ok(None),
            }
        },
    )
    .await
}

/// Snapshots imported by VM Import from an image in S3 (`aws_ebs_snapshot_import`).
#[derive(Debug)]
pub(crate) struct SnapshotImportProvider(pub(crate) Arc<AwsContext>);

#[async_trait]
impl Provider for SnapshotImportProvider {
    async fn read(&self, _kind: &str, requests: &[ReadRequest<'_>]) -> Result<Vec<Option<Observed>>> {
        read_snapshots(&self.0, requests, false).await
    }

    async fn create(&self, ctx: &StepContext, inputs: &Attrs) -> Result<Observed> {
        let address = &ctx.address;
        let container = SnapshotDiskContainer::builder()
            .format(DiskImageFormat::from(str_input(inputs, "format").unwrap_or("VHD")).as_str())
            .user_bucket(
                UserBucket::builder()
                    .s3_bucket(required(address, inputs, "bucket")?)
                    .s3_key(required(address, inputs, "key")?)
                    .build(),
            )
            .build();
        let role = required(address, inputs, "role_name")?;
        let token = ctx.idempotency_token();
        // A role created moments ago is not usable by VM Import yet (IAM is eventually consistent): retry on
        // the error code it answers with, for at most a minute, instead of sleeping up front.
        let started = retry_on(&["InvalidParameter"], Duration::from_secs(60), || async {
            self.0
                .ec2
                .import_snapshot()
                .disk_container(container.clone())
                .role_name(role)
                .client_token(&token)
                .set_description(str_input(inputs, "description").map(str::to_owned))
                .tag_specifications(tag_spec(ResourceType::ImportSnapshotTask, &all_tags(ctx, inputs)))
                .send()
                .await
                .map_err(|e| Failure::of(&e))
        })
        .await
        .map_err(|f| f.into_error(address, "ImportSnapshot"))?;
        let task = started.import_task_id().unwrap_or_default().to_owned();
        // NixOS/amis raised its import waiter to 100 minutes after imports ran past 10 (NixOS/amis#294).
        let wait = Wait::new(self.0.poll_interval(), Duration::from_secs(6000));
        let snapshot_id = wait_for(ctx, &format!("import task {task}"), wait, || async {
            let out = self
                .0
                .ec2
                .describe_import_snapshot_tasks()
                .import_task_ids(&task)
                .send()
                .await
                .map_err(aws_error(address, "DescribeImportSnapshotTasks"))?;
            let detail = out.import_snapshot_tasks().first().and_then(|t| t.snapshot_task_detail());
            match detail.and_then(|d| d.status()) {
                Some("completed") => Ok(detail.and_then(|d| d.snapshot_id()).map(str::to_owned)),
                Some("deleted" | "deleting") => Err(Error::provider(
                    address,
                    format!(
                        "import task {task} failed: {}",
                        detail.and_then(|d| d.status_message()).unwrap_or("no message")
                    ),
                )),
                _ => {
                    if let Some(p) = detail.and_then(|d| d.progress()) {
                        ctx.progress(format!("import task {task}: {p}%"));
                    }
                    Ok(None)
                }
            }
        })
        .await?;
        self.0
            .ec2
            .create_tags()
            .resources(&snapshot_id)
            .set_tags(Some(ec2_tags(&all_tags(ctx, inputs))))
            .send()
            .await
            .map_err(aws_error(address, "CreateTags"))?;
        let snapshot = wait_snapshot(&self.0, ctx, &snapshot_id).await?;
        let outputs = Attrs::from([
            ("arn".into(), snapshot_arn(self.0.region(), &snapshot_id)),
            ("id".into(), Attr::str(&snapshot_id)),
            ("volume_size".into(), snapshot.volume_size().map_or(Attr::Null, |s| Attr::Int(i64::from(s)))),
        ]);
        Ok(Observed { inputs: inputs.clone(), outputs })
    }

    async fn update(&self, ctx: &StepContext, prior: &ResourceState, inputs: &Attrs) -> Result<Observed> {
        let id = required(&ctx.address, &prior.outputs, "id")?;
        update_tags(&self.0, ctx, id, ctx.observed_or(&prior.inputs), inputs).await?;
        Ok(Observed { inputs: inputs.clone(), outputs: prior.outputs.clone() })
    }

    async fn delete(&self, ctx: &StepContext, prior: &ResourceState) -> Result<()> {
        delete_snapshot(&self.0, ctx, prior).await
    }
}

/// Tag updates for snapshots made by other providers.
pub(crate) async fn update_snapshot_tags(
    ctx: &AwsContext,
    step: &StepContext,
    prior: &ResourceState,
    inputs: &Attrs,
) -> Result<()> {
    let id = required(&step.address, &prior.outputs, "id")?;
    update_tags(ctx, step, id, step.observed_or(&prior.inputs), inputs).await
}
