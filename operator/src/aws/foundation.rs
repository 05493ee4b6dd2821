//! The cell's foundation stack through CloudFormation: created, updated when its parameters
//! change, observed (outputs, or the failure reason from the stack's events), deleted.

use std::collections::BTreeMap;

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::error::ProvideErrorMetadata;
use aws_sdk_cloudformation::types::{Capability, Parameter, ResourceStatus, StackStatus, Tag};
use cell_model::Cell;

use crate::error::Error;
use crate::render::namespace;

use super::{AwsSettings, aws_error};

/// The foundation template, as committed in `cell-templates/`.
pub const FOUNDATION_TEMPLATE: &str = include_str!("../../../cell-templates/cell-foundation.yaml");

/// What the foundation stack of a cell is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StackState {
    Absent,
    /// Being created, updated, rolled back or deleted (the CloudFormation status).
    InProgress(String),
    /// Created or updated: the stack's outputs.
    Ready(BTreeMap<String, String>),
    /// Failed: the status and the first failure reason from the stack's events.
    Failed {
        status: String,
        reason: String,
    },
}

/// The cell foundation stacks, through one CloudFormation client.
#[derive(Clone, Debug)]
pub struct Foundation {
    cfn: Client,
    settings: AwsSettings,
}

impl Foundation {
    pub fn new(sdk: &aws_config::SdkConfig, settings: AwsSettings) -> Self {
        Self::from_client(Client::new(sdk), settings)
    }

    /// With a given client (tests: scripted replies).
    pub fn from_client(cfn: Client, settings: AwsSettings) -> Self {
        Self { cfn, settings }
    }

    /// The cell's stack name.
    pub fn stack_name(cell: &Cell) -> String {
        format!("mrbill-{}", cell.spec.cell_id)
    }

    fn parameters(&self, cell: &Cell) -> Vec<(&'static str, String)> {
        let s = &self.settings;
        vec![
            ("CellId", cell.spec.cell_id.clone()),
            ("Tenant", cell.spec.tenant.clone()),
            ("Tier", cell.spec.tier.as_str().to_owned()),
            ("VpcId", s.vpc_id.clone()),
            ("SubnetIds", s.subnet_ids.join(",")),
            (
                "ClusterSecurityGroupId",
                s.cluster_security_group_id.clone(),
            ),
            ("OidcProviderArn", s.oidc_provider_arn.clone()),
            ("OidcProviderHost", s.oidc_provider_host.clone()),
            ("ServiceAccountNamespace", namespace(cell)),
            ("ServiceAccountName", "cell".to_owned()),
        ]
    }

    fn sdk_parameters(&self, cell: &Cell) -> Vec<Parameter> {
        self.parameters(cell)
            .into_iter()
            .map(|(k, v)| {
                Parameter::builder()
                    .parameter_key(k)
                    .parameter_value(v)
                    .build()
            })
            .collect()
    }

    /// Cost-allocation tags; CloudFormation puts them on every resource of the stack.
    pub fn tags(cell: &Cell) -> Vec<(&'static str, String)> {
        vec![
            ("mrbill:tenant", cell.spec.tenant.clone()),
            ("mrbill:cell", cell.spec.cell_id.clone()),
            ("mrbill:tier", cell.spec.tier.as_str().to_owned()),
        ]
    }

    fn sdk_tags(cell: &Cell) -> Vec<Tag> {
        Self::tags(cell)
            .into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect()
    }

    /// The stack as it is now.
    pub async fn observe(&self, cell: &Cell) -> Result<StackState, Error> {
        let name = Self::stack_name(cell);
        let stacks = match self.cfn.describe_stacks().stack_name(&name).send().await {
            Ok(out) => out,
            // CloudFormation answers a missing stack with a ValidationError.
            Err(e) if e.message().is_some_and(|m| m.contains("does not exist")) => {
                return Ok(StackState::Absent);
            }
            Err(e) => return Err(aws_error(format!("describing stack {name}"), e)),
        };
        let Some(stack) = stacks.stacks().first() else {
            return Ok(StackState::Absent);
        };
        let status = stack
            .stack_status()
            .cloned()
            .unwrap_or(StackStatus::CreateInProgress);
        Ok(match status {
            StackStatus::CreateComplete | StackStatus::UpdateComplete => StackState::Ready(
                stack
                    .outputs()
                    .iter()
                    .filter_map(|o| {
                        Some((o.output_key()?.to_owned(), o.output_value()?.to_owned()))
                    })
                    .collect(),
            ),
            StackStatus::DeleteComplete => StackState::Absent,
            StackStatus::CreateFailed
            | StackStatus::RollbackComplete
            | StackStatus::RollbackFailed
            | StackStatus::DeleteFailed
            | StackStatus::UpdateFailed
            | StackStatus::UpdateRollbackComplete
            | StackStatus::UpdateRollbackFailed => StackState::Failed {
                status: status.as_str().to_owned(),
                reason: self
                    .failure_reason(&name)
                    .await
                    .or_else(|| stack.stack_status_reason().map(str::to_owned))
                    .unwrap_or_else(|| "no reason given".into()),
            },
            other => StackState::InProgress(other.as_str().to_owned()),
        })
    }

    /// The stack's outputs in whatever state it is (an update rolled back or in progress keeps
    /// those of its last good state); empty when there is no stack.
    pub async fn outputs(&self, cell: &Cell) -> Result<BTreeMap<String, String>, Error> {
        let name = Self::stack_name(cell);
        let stacks = match self.cfn.describe_stacks().stack_name(&name).send().await {
            Ok(out) => out,
            Err(e) if e.message().is_some_and(|m| m.contains("does not exist")) => {
                return Ok(BTreeMap::new());
            }
            Err(e) => return Err(aws_error(format!("describing stack {name}"), e)),
        };
        Ok(stacks
            .stacks()
            .iter()
            .filter(|s| s.stack_status() != Some(&StackStatus::DeleteComplete))
            .flat_map(|s| s.outputs())
            .filter_map(|o| Some((o.output_key()?.to_owned(), o.output_value()?.to_owned())))
            .collect())
    }

    /// The oldest failure in the stack's events (the cause; later ones are consequences).
    async fn failure_reason(&self, name: &str) -> Option<String> {
        let events = self
            .cfn
            .describe_stack_events()
            .stack_name(name)
            .send()
            .await
            .ok()?;
        events
            .stack_events()
            .iter()
            .rev()
            .find(|e| {
                matches!(
                    e.resource_status(),
                    Some(
                        ResourceStatus::CreateFailed
                            | ResourceStatus::UpdateFailed
                            | ResourceStatus::DeleteFailed
                    )
                ) && e.resource_status_reason().is_some()
            })
            .map(|e| {
                format!(
                    "{}: {}",
                    e.logical_resource_id().unwrap_or("stack"),
                    e.resource_status_reason().unwrap_or_default()
                )
            })
    }

    /// Creates the stack, or updates it when its parameters differ, and reports where it is.
    /// A stack whose creation failed is deleted (after its rollback) and reported failed; the
    /// next call creates it again.
    pub async fn ensure(&self, cell: &Cell) -> Result<StackState, Error> {
        let name = Self::stack_name(cell);
        match self.observe(cell).await? {
            StackState::Absent => {
                match self
                    .cfn
                    .create_stack()
                    .stack_name(&name)
                    .template_body(FOUNDATION_TEMPLATE)
                    .set_parameters(Some(self.sdk_parameters(cell)))
                    .set_tags(Some(Self::sdk_tags(cell)))
                    .capabilities(Capability::CapabilityIam)
                    .send()
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.code() == Some("AlreadyExistsException") => {}
                    Err(e) => return Err(aws_error(format!("creating stack {name}"), e)),
                }
                self.observe(cell).await
            }
            StackState::Ready(outputs) => {
                if self.current_parameters(&name).await? == self.parameters_map(cell) {
                    return Ok(StackState::Ready(outputs));
                }
                match self
                    .cfn
                    .update_stack()
                    .stack_name(&name)
                    .use_previous_template(false)
                    .template_body(FOUNDATION_TEMPLATE)
                    .set_parameters(Some(self.sdk_parameters(cell)))
                    .set_tags(Some(Self::sdk_tags(cell)))
                    .capabilities(Capability::CapabilityIam)
                    .send()
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.message().is_some_and(|m| m.contains("No updates")) => {}
                    Err(e) => return Err(aws_error(format!("updating stack {name}"), e)),
                }
                self.observe(cell).await
            }
            StackState::Failed { status, reason } if status == "ROLLBACK_COMPLETE" => {
                // Nothing of it remains but the stack record; clear it for a fresh create.
                self.delete(cell).await?;
                Ok(StackState::Failed { status, reason })
            }
            other => Ok(other),
        }
    }

    fn parameters_map(&self, cell: &Cell) -> BTreeMap<String, String> {
        self.parameters(cell)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }

    async fn current_parameters(&self, name: &str) -> Result<BTreeMap<String, String>, Error> {
        let out = self
            .cfn
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| aws_error(format!("describing stack {name}"), e))?;
        let defaults = ["ReportRetentionDays", "VideoRetentionDays"];
        Ok(out
            .stacks()
            .first()
            .map(|s| s.parameters())
            .unwrap_or_default()
            .iter()
            .filter_map(|p| {
                Some((
                    p.parameter_key()?.to_owned(),
                    p.parameter_value()?.to_owned(),
                ))
            })
            .filter(|(k, _)| !defaults.contains(&k.as_str()))
            .collect())
    }

    /// Asks for the stack to be deleted; `true` once it is gone. (The key and the bucket are
    /// retained by the template's deletion policy: data is never deleted with the stack.)
    pub async fn delete(&self, cell: &Cell) -> Result<bool, Error> {
        let name = Self::stack_name(cell);
        if self.observe(cell).await? == StackState::Absent {
            return Ok(true);
        }
        self.cfn
            .delete_stack()
            .stack_name(&name)
            .send()
            .await
            .map_err(|e| aws_error(format!("deleting stack {name}"), e))?;
        Ok(self.observe(cell).await? == StackState::Absent)
    }
}
