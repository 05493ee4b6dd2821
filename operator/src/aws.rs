//! AWS resources of a cell whose database engine is `rds`: the foundation stack
//! (`cell-templates/cell-foundation.yaml`, embedded) through CloudFormation — created, updated
//! when its parameters change, observed (outputs, or the failure reason from the stack's
//! events), and deleted — and the cell's RDS instance through the RDS API ([`Rds`]). Credentials and region come from the standard AWS provider chain
//! (IRSA in the cluster); `AWS_ENDPOINT_URL` overrides the endpoint (tests: moto).
//!
//! **Invariants:** one stack per cell, named `mrbill-<cell id>`; every call is safe to repeat
//! (a create that finds its stack observes it; an update without changes is no change); a stack
//! that failed to create is deleted (its resources were rolled back) so the next reconcile can
//! create it afresh — nothing is left half made.

use std::collections::BTreeMap;

use aws_sdk_cloudformation::Client;
use aws_sdk_cloudformation::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_cloudformation::types::{Capability, Parameter, ResourceStatus, StackStatus, Tag};
use cell_model::Cell;

use crate::error::Error;
use crate::render::namespace;

/// The foundation template, as committed in `cell-templates/`.
pub const FOUNDATION_TEMPLATE: &str = include_str!("../../cell-templates/cell-foundation.yaml");

/// Where a cell's AWS resources go: the cluster's network and identity (operator settings).
#[derive(Clone, Debug)]
pub struct AwsSettings {
    pub vpc_id: String,
    /// Database subnets, in at least two availability zones.
    pub subnet_ids: Vec<String>,
    pub cluster_security_group_id: String,
    pub oidc_provider_arn: String,
    /// The OIDC issuer without `https://`.
    pub oidc_provider_host: String,
}

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

/// An SDK error as the controller's error, carrying the AWS error code as its reason. (Every
/// AWS SDK crate shares these smithy error types.)
fn aws_error<E, R>(action: String, e: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let code = e.code().unwrap_or("AwsUnreachable").to_owned();
    let message = e
        .message()
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{}", aws_sdk_cloudformation::error::DisplayErrorContext(&e)));
    Error::Aws {
        action,
        code,
        message,
    }
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

/// The master credentials an instance is created with (from the foundation's secret).
#[derive(Clone)]
pub struct MasterCredentials {
    pub username: String,
    pub password: secrecy::SecretString,
}

impl std::fmt::Debug for MasterCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// What a cell's RDS instance is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstanceState {
    Absent,
    /// creating, modifying, backing-up, deleting, … (the RDS status).
    InProgress(String),
    Available {
        address: String,
        port: i32,
        class: String,
        storage_gib: i32,
    },
    /// failed, incompatible-parameters, storage-full, … (the RDS status).
    Failed(String),
}

/// The cells' RDS instances: one per cell, `mrbill-<cell id>`, Postgres, Multi-AZ when the spec
/// says so, encrypted with the cell's key, deletion-protected, in the cell's subnet group and
/// security group, tagged like the stack. Scaled with ModifyDBInstance (never through the
/// stack), deleted only after a final snapshot, restorable from a snapshot.
#[derive(Clone, Debug)]
pub struct Rds {
    rds: aws_sdk_rds::Client,
}

/// Postgres major version of new instances.
pub const POSTGRES_VERSION: &str = "16";

impl Rds {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self::from_client(aws_sdk_rds::Client::new(sdk))
    }

    /// With a given client (tests: scripted replies).
    pub fn from_client(rds: aws_sdk_rds::Client) -> Self {
        Self { rds }
    }

    pub fn identifier(cell: &Cell) -> String {
        format!("mrbill-{}", cell.spec.cell_id)
    }

    /// The instance class the spec asks for (its own, else the tier's).
    pub fn class(cell: &Cell) -> String {
        cell.spec
            .database
            .class
            .clone()
            .unwrap_or_else(|| cell.spec.tier.template().db_class.to_owned())
    }

    fn tags(cell: &Cell) -> Vec<aws_sdk_rds::types::Tag> {
        Foundation::tags(cell)
            .into_iter()
            .map(|(k, v)| aws_sdk_rds::types::Tag::builder().key(k).value(v).build())
            .collect()
    }

    async fn describe(&self, id: &str) -> Result<Option<aws_sdk_rds::types::DbInstance>, Error> {
        match self
            .rds
            .describe_db_instances()
            .db_instance_identifier(id)
            .send()
            .await
        {
            Ok(out) => Ok(out.db_instances().first().cloned()),
            Err(e) if e.code() == Some("DBInstanceNotFound") => Ok(None),
            Err(e) => Err(aws_error(format!("describing RDS instance {id}"), e)),
        }
    }

    /// The instance as it is now.
    pub async fn observe(&self, cell: &Cell) -> Result<InstanceState, Error> {
        Ok(match self.describe(&Self::identifier(cell)).await? {
            None => InstanceState::Absent,
            Some(db) => state_of(&db),
        })
    }

    /// Creates the instance in the cell's foundation (`outputs` of its stack), or scales it when
    /// class or storage differ from the spec; reports where it is.
    pub async fn ensure(
        &self,
        cell: &Cell,
        outputs: &BTreeMap<String, String>,
        master: &MasterCredentials,
    ) -> Result<InstanceState, Error> {
        use secrecy::ExposeSecret;
        let id = Self::identifier(cell);
        let output = |key: &str| {
            outputs
                .get(key)
                .cloned()
                .ok_or_else(|| Error::Render(format!("the foundation stack has no output {key}")))
        };
        let Some(db) = self.describe(&id).await? else {
            let created = self
                .rds
                .create_db_instance()
                .db_instance_identifier(&id)
                .engine("postgres")
                .engine_version(POSTGRES_VERSION)
                .db_instance_class(Self::class(cell))
                .allocated_storage(cell.spec.database.storage_gib as i32)
                .storage_type("gp3")
                .port(5432)
                .multi_az(cell.spec.database.multi_az)
                .storage_encrypted(true)
                .kms_key_id(output("KeyArn")?)
                .deletion_protection(true)
                .db_subnet_group_name(output("DbSubnetGroupName")?)
                .vpc_security_group_ids(output("DbSecurityGroupId")?)
                .publicly_accessible(false)
                .backup_retention_period(7)
                .copy_tags_to_snapshot(true)
                .master_username(&master.username)
                .master_user_password(master.password.expose_secret())
                .set_tags(Some(Self::tags(cell)))
                .send()
                .await;
            return match created {
                Ok(out) => Ok(out
                    .db_instance()
                    .map(state_of)
                    .unwrap_or(InstanceState::InProgress("creating".into()))),
                Err(e) if e.code() == Some("DBInstanceAlreadyExists") => self.observe(cell).await,
                Err(e) => Err(aws_error(format!("creating RDS instance {id}"), e)),
            };
        };
        let state = state_of(&db);
        let InstanceState::Available {
            class, storage_gib, ..
        } = &state
        else {
            return Ok(state);
        };
        let want_class = Self::class(cell);
        let want_storage = cell.spec.database.storage_gib as i32;
        if *class == want_class && *storage_gib >= want_storage {
            return Ok(state);
        }
        // Storage only grows (RDS cannot shrink it).
        self.rds
            .modify_db_instance()
            .db_instance_identifier(&id)
            .db_instance_class(want_class)
            .allocated_storage(want_storage.max(*storage_gib))
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| aws_error(format!("scaling RDS instance {id}"), e))?;
        self.observe(cell).await
    }

    /// Deletes the instance after a final snapshot (deletion protection is lifted first);
    /// returns the snapshot's identifier once the instance is gone, `None` while it goes.
    pub async fn delete(&self, cell: &Cell, snapshot: &str) -> Result<Option<String>, Error> {
        let id = Self::identifier(cell);
        let Some(db) = self.describe(&id).await? else {
            return Ok(Some(snapshot.to_owned()));
        };
        if db.db_instance_status() == Some("deleting") {
            return Ok(None);
        }
        if db.deletion_protection() == Some(true) {
            self.rds
                .modify_db_instance()
                .db_instance_identifier(&id)
                .deletion_protection(false)
                .apply_immediately(true)
                .send()
                .await
                .map_err(|e| aws_error(format!("lifting deletion protection of {id}"), e))?;
        }
        match self
            .rds
            .delete_db_instance()
            .db_instance_identifier(&id)
            .skip_final_snapshot(false)
            .final_db_snapshot_identifier(snapshot)
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if e.code() == Some("DBInstanceNotFound") => {}
            Err(e) => return Err(aws_error(format!("deleting RDS instance {id}"), e)),
        }
        Ok(self
            .describe(&id)
            .await?
            .is_none()
            .then(|| snapshot.to_owned()))
    }

    /// Creates the cell's instance from `snapshot` (a migration's restore), in the cell's
    /// foundation, encrypted with its key.
    pub async fn restore(
        &self,
        cell: &Cell,
        outputs: &BTreeMap<String, String>,
        snapshot: &str,
    ) -> Result<InstanceState, Error> {
        let id = Self::identifier(cell);
        if self.describe(&id).await?.is_some() {
            return self.observe(cell).await;
        }
        let output = |key: &str| {
            outputs
                .get(key)
                .cloned()
                .ok_or_else(|| Error::Render(format!("the foundation stack has no output {key}")))
        };
        self.rds
            .restore_db_instance_from_db_snapshot()
            .db_instance_identifier(&id)
            .db_snapshot_identifier(snapshot)
            .db_instance_class(Self::class(cell))
            .port(5432)
            .multi_az(cell.spec.database.multi_az)
            .deletion_protection(true)
            .db_subnet_group_name(output("DbSubnetGroupName")?)
            .vpc_security_group_ids(output("DbSecurityGroupId")?)
            .publicly_accessible(false)
            .copy_tags_to_snapshot(true)
            .set_tags(Some(Self::tags(cell)))
            .send()
            .await
            .map_err(|e| aws_error(format!("restoring {id} from {snapshot}"), e))?;
        self.observe(cell).await
    }
}

fn state_of(db: &aws_sdk_rds::types::DbInstance) -> InstanceState {
    let status = db.db_instance_status().unwrap_or("creating").to_owned();
    match status.as_str() {
        "available" => InstanceState::Available {
            address: db
                .endpoint()
                .and_then(|e| e.address())
                .unwrap_or_default()
                .to_owned(),
            port: db.endpoint().and_then(|e| e.port()).unwrap_or(5432),
            class: db.db_instance_class().unwrap_or_default().to_owned(),
            storage_gib: db.allocated_storage().unwrap_or_default(),
        },
        "failed"
        | "incompatible-parameters"
        | "incompatible-restore"
        | "incompatible-network"
        | "incompatible-option-group"
        | "inaccessible-encryption-credentials"
        | "storage-full"
        | "restore-error" => InstanceState::Failed(status),
        _ => InstanceState::InProgress(status),
    }
}

/// Everything the operator uses on AWS, from one SDK configuration.
#[derive(Clone)]
pub struct AwsClients {
    pub foundation: Foundation,
    pub rds: Rds,
    secrets: aws_sdk_secretsmanager::Client,
    /// Makes the services' roles in an instance (directly, as its master user).
    pub admin: std::sync::Arc<dyn crate::roles::DatabaseAdmin>,
}

impl std::fmt::Debug for AwsClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsClients")
            .field("foundation", &self.foundation)
            .field("rds", &self.rds)
            .finish_non_exhaustive()
    }
}

impl AwsClients {
    pub fn new(sdk: &aws_config::SdkConfig, settings: AwsSettings) -> Self {
        Self {
            foundation: Foundation::new(sdk, settings),
            rds: Rds::new(sdk),
            secrets: aws_sdk_secretsmanager::Client::new(sdk),
            admin: std::sync::Arc::new(crate::roles::Postgres),
        }
    }

    /// The same, making roles with `admin` (tests reach a local stand-in for the instance).
    pub fn with_admin(mut self, admin: std::sync::Arc<dyn crate::roles::DatabaseAdmin>) -> Self {
        self.admin = admin;
        self
    }

    /// The foundation's generated master credentials (secret `mrbill/<cell>/database`).
    pub async fn master_credentials(&self, cell: &Cell) -> Result<MasterCredentials, Error> {
        let name = format!("mrbill/{}/database", cell.spec.cell_id);
        let value = self
            .secrets
            .get_secret_value()
            .secret_id(&name)
            .send()
            .await
            .map_err(|e| aws_error(format!("reading secret {name}"), e))?;
        let parsed: serde_json::Value =
            serde_json::from_str(value.secret_string().unwrap_or_default())
                .map_err(|e| Error::Render(format!("secret {name} is not JSON: {e}")))?;
        match (parsed["username"].as_str(), parsed["password"].as_str()) {
            (Some(username), Some(password)) => Ok(MasterCredentials {
                username: username.to_owned(),
                password: secrecy::SecretString::from(password.to_owned()),
            }),
            _ => Err(Error::Render(format!(
                "secret {name} lacks username or password"
            ))),
        }
    }
}
