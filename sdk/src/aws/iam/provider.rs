//! The IAM providers: roles and their inline policies. Policy documents travel as JSON and are compared in
//! canonical form by the planner.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_iam::types::Tag;

use crate::attr::{Attr, Attrs};
use crate::aws::context::{
    AwsContext, Failure, all_tags, aws_error, int_input, observed_tags, required, str_input, tag_changes,
};
use crate::error::{Error, Result};
use crate::provider::{Observed, Provider, ReadRequest, StepContext};
use crate::state::ResourceState;

/// Roles (`aws_iam_role`).
#[derive(Debug)]
pub(crate) struct RoleProvider(pub(crate) Arc<AwsContext>);

/// Inline role policies (`aws_iam_role_policy`).
#[derive(Debug)]
pub(crate) struct RolePolicyProvider(pub(crate) Arc<AwsContext>);

/// IAM returns policy documents URL-encoded (RFC 3986).
pub(crate) fn url_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A policy document as AWS returns it (URL-encoded JSON, or plain JSON) as an attribute tree.
fn document(address: &crate::address::Address, text: &str) -> Result<Attr> {
    let decoded = if text.trim_start().starts_with('{') { text.to_owned() } else { url_decode(text) };
    let json: serde_json::Value = serde_json::from_str(&decoded)
        .map_err(|e| Error::provider(address, format!("AWS returned a policy that is not JSON: {e}")))?;
    Attr::from_json(&json).map_err(|e| Error::provider(address, e))
}

fn document_json(address: &crate::address::Address, inputs: &Attrs, field: &str) -> Result<String> {
    inputs
        .get(field)
        .filter(|a| a.is_known() && **a != Attr::Null)
        .map(|a| a.to_json().to_string())
        .ok_or_else(|| Error::provider(address, format!("input `{field}` is missing")))
}

fn iam_tags(tags: &[(String, String)]) -> Result<Vec<Tag>> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(|e| Error::invalid(format!("tag {k:?}: {e}"))))
        .collect()
}

fn role_outputs(role: &aws_sdk_iam::types::Role) -> Attrs {
    Attrs::from([("arn".into(), Attr::str(role.arn())), ("role_id".into(), Attr::str(role.role_id()))])
}

impl RoleProvider {
    async fn read_one(&self, request: &ReadRequest<'_>) -> Result<Option<Observed>> {
        let address = request.address;
        let name = required(address, request.inputs, "name")?;
        let role = match self.0.iam.get_role().role_name(name).send().await {
            Ok(out) => out.role,
            Err(e) if Failure::of(&e).is(&["NoSuchEntity"]) => return Ok(None),
            Err(e) => return Err(Failure::of(&e).into_error(address, "GetRole")),
        };
        let Some(role) = role else { return Ok(None) };
        let policy = match role.assume_role_policy_document() {
            Some(text) => document(address, text)?,
            None => Attr::Null,
        };
        let inputs = Attrs::from([
            ("assume_role_policy".into(), policy),
            ("description".into(), role.description().map_or(Attr::Null, Attr::str)),
            ("max_session_duration".into(), Attr::Int(i64::from(role.max_session_duration().unwrap_or(3600)))),
            ("name".into(), Attr::str(role.role_name())),
            ("path".into(), Attr::str(role.path())),
            ("tags".into(), observed_tags(role.tags().iter().map(|t| (t.key(), t.value())))),
        ]);
        Ok(Some(Observed { inputs, outputs: role_outputs(&role) }))
    }
}

#[async_trait]
impl Provider for RoleProvider {
    async fn read(&self, _kind: &str, requests: &[ReadRequest<'_>]) -> Result<Vec<Option<Observed>>> {
        futures::future::try_join_all(requests.iter().map(|r| self.read_one(r))).await
    }

    async fn create(&self, ctx: &StepContext, inputs: &Attrs) -> Result<Observed> {
        let name = required(&ctx.address, inputs, "name")?;
        let created = self
            .0
            .iam
            .create_role()
            .role_name(name)
            .path(str_input(inputs, "path").unwrap_or("/"))
            .assume_role_policy_document(document_json(&ctx.address, inputs, "assume_role_policy")?)
            .set_description(str_input(inputs, "description").map(str::to_owned))
            .max_session_duration(int_input(inputs, "max_session_duration").unwrap_or(3600) as i32)
            .set_tags(Some(iam_tags(&all_tags(ctx, inputs))?))
            .send()
            .await;
        let role = match created {
            Ok(out) => out.role,
            Err(e) if Failure::of(&e).is(&["EntityAlreadyExists"]) => {
                // Adopt the role only if an earlier, interrupted run of this very resource made it.
                let existing =
                    self.0.iam.get_role().role_name(name).send().await.map_err(aws_error(&ctx.address, "GetRole"))?;
                let ours = existing.role().is_some_and(|r| {
                    r.tags().iter().any(|t| t.key() == "paranix:address" && t.value() == ctx.address.to_string())
                });
                if !ours {
                    return Err(Error::provider(
                        &ctx.address,
                        format!("role {name:?} already exists and was not created by paranix for this resource"),
                    ));
                }
                return self.update_role(ctx, existing.role.as_ref(), inputs).await;
            }
            Err(e) => return Err(Failure::of(&e).into_error(&ctx.address, "CreateRole")),
        };
        let outputs = role.as_ref().map(role_outputs).unwrap_or_default();
        Ok(Observed { inputs: inputs.clone(), outputs })
    }

    async fn update(&self, ctx: &StepContext, prior: &ResourceState, inputs: &Attrs) -> Result<Observed> {
        let changed = |f: &str| ctx.changes(f);
        let name = required(&ctx.address, inputs, "name")?;
        if changed("description") || changed("max_session_duration") {
            self.0
                .iam
                .update_role()
                .role_name(name)
                .description(str_input(inputs, "description").unwrap_or_default())
                .max_session_duration(int_input(inputs, "max_session_duration").unwrap_or(3600) as i32)
                .send()
                .await
                .map_err(aws_error(&ctx.address, "UpdateRole"))?;
        }
        if changed("assume_role_policy") {
            self.0
                .iam
                .update_assume_role_policy()
                .role_name(name)
                .policy_document(document_json(&ctx.address, inputs, "assume_role_policy")?)
                .send()
                .await
                .map_err(aws_error(&ctx.address, "UpdateAssumeRolePolicy"))?;
        }
        if changed("tags") {
            let (add, remove) = tag_changes(ctx.observed_or(&prior.inputs), inputs);
            if !remove.is_empty() {
                self.0
                    .iam
                    .untag_role()
                    .role_name(name)
                    .set_tag_keys(Some(remove))
                    .send()
                    .await
                    .map_err(aws_error(&ctx.address, "UntagRole"))?;
            }
            if !add.is_empty() {
                self.0
                    .iam
                    .tag_role()
                    .role_name(name)
                    .set_tags(Some(iam_tags(&add)?))
                    .send()
                    .await
                    .map_err(aws_error(&ctx.address, "TagRole"))?;
            }
        }
        Ok(Observed { inputs: inputs.clone(), outputs: prior.outputs.clone() })
    }

    async fn delete(&self, ctx: &StepContext, prior: &ResourceState) -> Result<()> {
        let name = required(&ctx.address, &prior.inputs, "name")?;
        match self.0.iam.delete_role().role_name(name).send().await {
            Ok(_) => Ok(()),
            Err(e) if Failure::of(&e).is(&["NoSuchEntity"]) => Ok(()),
            Err(e) => Err(Failure::of(&e).into_error(&ctx.address, "DeleteRole")),
        }
    }
}

impl RoleProvider {
    /// Brings an adopted role to the configuration (after an interrupted create).
    async fn update_role(
        &self,
        ctx: &StepContext,
        role: Option<&aws_sdk_iam::types::Role>,
        inputs: &Attrs,
    ) -> Result<Observed> {
        let prior =
            ResourceState { inputs: Attrs::new(), outputs: Attrs::new(), dependencies: Vec::new(), generation: 0 };
        self.update(ctx, &prior, inputs).await?;
        Ok(Observed { inputs: inputs.clone(), outputs: role.map(role_outputs).unwrap_or_default() })
    }
}

#[async_trait]
impl Provider for RolePolicyProvider {
    async fn read(&self, _kind: &str, requests: &[ReadRequest<'_>]) -> Result<Vec<Option<Observed>>> {
        futures::future::try_join_all(requests.iter().map(|r| async move {
            let address = r.address;
            let role = required(address, r.inputs, "role")?;
            let name = required(address, r.inputs, "name")?;
            match self.0.iam.get_role_policy().role_name(role).policy_name(name).send().await {
                Ok(out) => {
                    let inputs = Attrs::from([
                        ("name".into(), Attr::str(out.policy_name())),
                        ("policy".into(), document(address, out.policy_document())?),
                        ("role".into(), Attr::str(out.role_name())),
                    ]);
                    Ok(Some(Observed { inputs, outputs: Attrs::new() }))
                }
                Err(e) if Failure::of(&e).is(&["NoSuchEntity"]) => Ok(None),
                Err(e) => Err(Failure::of(&e).into_error(address, "GetRolePolicy")),
            }
        }))
        .await
    }

    async fn create(&self, ctx: &StepContext, inputs: &Attrs) -> Result<Observed> {
        self.0
            .iam
            .put_role_policy()
            .role_name(required(&ctx.address, inputs, "role")?)
            .policy_name(required(&ctx.address, inputs, "name")?)
            .policy_document(document_json(&ctx.address, inputs, "policy")?)
            .send()
            .await
            .map_err(aws_error(&ctx.address, "PutRolePolicy"))?;
        Ok(Observed { inputs: inputs.clone(), outputs: Attrs::new() })
    }

    async fn update(&self, ctx: &StepContext, _prior: &ResourceState, inputs: &Attrs) -> Result<Observed> {
        self.create(ctx, inputs).await
    }

    async fn delete(&self, ctx: &StepContext, prior: &ResourceState) -> Result<()> {
        let result = self
            .0
            .iam
            .delete_role_policy()
            .role_name(required(&ctx.address, &prior.inputs, "role")?)
            .policy_name(required(&ctx.address, &prior.inputs, "name")?)
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if Failure::of(&e).is(&["NoSuchEntity"]) => Ok(()),
            Err(e) => Err(Failure::of(&e).into_error(&ctx.address, "DeleteRolePolicy")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::url_decode;

    #[test]
    fn policy_documents_are_url_decoded() {
        assert_eq!(url_decode("%7B%22Version%22%3A%222012-10-17%22%7D"), "{\"Version\":\"2012-10-17\"}");
        assert_eq!(url_decode("a%2Fb+c%"), "a/b c%");
    }
}
