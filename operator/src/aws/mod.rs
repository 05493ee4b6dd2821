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

mod foundation;
mod objects;
mod rds;

pub use crate::roles::MasterCredentials;
pub use foundation::{FOUNDATION_TEMPLATE, Foundation, StackState};
pub use objects::{Bucket, Objects, Store};
pub use rds::{
    Instance, InstanceState, MASTER_RESET_TAG, PARAMETER_GROUP, POSTGRES_VERSION, RESTORE_TAG, Rds,
};

use aws_sdk_cloudformation::error::{ProvideErrorMetadata, SdkError};
use cell_model::Cell;

use crate::error::Error;

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

/// An SDK error as the controller's error, carrying the AWS error code as its reason. (Every
/// AWS SDK crate shares these smithy error types.)
pub(crate) fn aws_error<E, R>(action: String, e: SdkError<E, R>) -> Error
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

/// Everything the operator uses on AWS, from one SDK configuration.
#[derive(Clone)]
pub struct AwsClients {
    pub foundation: Foundation,
    pub rds: Rds,
    secrets: aws_sdk_secretsmanager::Client,
    /// Cells' buckets in any region (a move copies its artifacts).
    pub objects: Objects,
    /// The region this operator's cells are in.
    pub region: String,
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
            objects: Objects::new(sdk),
            region: sdk.region().map(ToString::to_string).unwrap_or_default(),
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
        let name = master_secret(cell);
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

    /// Deletes the master credentials of a deleted cell's instance at once, without Secrets
    /// Manager's recovery window (which would hold the name, so a returning cell's foundation
    /// could not make it again): its final snapshot comes back with the new foundation's.
    pub async fn forget_master(&self, cell: &Cell) -> Result<(), Error> {
        let name = master_secret(cell);
        match self
            .secrets
            .delete_secret()
            .secret_id(&name)
            .force_delete_without_recovery(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(aws_error(format!("deleting secret {name}"), e)),
        }
    }
}

/// The foundation's secret of the cell's master credentials.
fn master_secret(cell: &Cell) -> String {
    format!("mrbill/{}/database", cell.spec.cell_id)
}
