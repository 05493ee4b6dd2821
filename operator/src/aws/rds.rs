//! The cell's RDS instance through the RDS API.

use std::collections::BTreeMap;

use aws_sdk_cloudformation::error::ProvideErrorMetadata;
use cell_model::Cell;

use crate::error::Error;

use super::{Foundation, aws_error};
use crate::roles::MasterCredentials;

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

/// What [`Rds::instance`] tells of an instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    pub state: InstanceState,
    /// The restore it was made by ([`RESTORE_TAG`]), if any.
    pub restore: Option<String>,
    /// Its master password is not yet the foundation's ([`MASTER_RESET_TAG`]).
    pub master_reset: bool,
    /// The latest moment RDS can restore it to (its automated backups).
    pub restorable_until: Option<time::OffsetDateTime>,
}

/// The tag naming the restore an instance was made by (`spec.restore.id`).
pub const RESTORE_TAG: &str = "mrbill:restore";

/// The tag of an instance restored from a deleted cell's snapshot until its master password is
/// the new foundation's ([`Rds::reset_master`]).
pub const MASTER_RESET_TAG: &str = "mrbill:master-reset";

/// Postgres major version of new instances.
pub const POSTGRES_VERSION: &str = "16";

/// The instances' parameter group, one per region for every cell: logical replication on
/// (a move between placements replicates each database to the target's instance). Static:
/// an instance switched to it replicates after its next reboot.
pub const PARAMETER_GROUP: &str = "mrbill-postgres16";

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

    /// The name instance [`Rds::identifier`] goes by once restore `restore` replaced it.
    pub fn replaced(cell: &Cell, restore: &str) -> String {
        format!(
            "{}-replaced-{}",
            Self::identifier(cell),
            crate::render::short_id(restore)
        )
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
        let output = |key: &str| output(outputs, key);
        let Some(db) = self.describe(&id).await? else {
            self.ensure_parameter_group().await?;
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
                .db_parameter_group_name(PARAMETER_GROUP)
                .vpc_security_group_ids(output("DbSecurityGroupId")?)
                .publicly_accessible(false)
                // Automated backups (point-in-time restore) for the tier's retention.
                .backup_retention_period(cell.spec.tier.template().backup_retention_days as i32)
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
        // Instances made before the parameter group join it (effective at their next reboot).
        let grouped = db
            .db_parameter_groups()
            .iter()
            .any(|g| g.db_parameter_group_name() == Some(PARAMETER_GROUP));
        if *class == want_class && *storage_gib >= want_storage && grouped {
            return Ok(state);
        }
        if !grouped {
            self.ensure_parameter_group().await?;
        }
        // Storage only grows (RDS cannot shrink it).
        self.rds
            .modify_db_instance()
            .db_instance_identifier(&id)
            .db_instance_class(want_class)
            .allocated_storage(want_storage.max(*storage_gib))
            .db_parameter_group_name(PARAMETER_GROUP)
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| aws_error(format!("scaling RDS instance {id}"), e))?;
        self.observe(cell).await
    }

    /// Makes [`PARAMETER_GROUP`] unless it is there.
    async fn ensure_parameter_group(&self) -> Result<(), Error> {
        let found = self
            .rds
            .describe_db_parameter_groups()
            .db_parameter_group_name(PARAMETER_GROUP)
            .send()
            .await;
        match found {
            Ok(out) if !out.db_parameter_groups().is_empty() => return Ok(()),
            Ok(_) => {}
            Err(e) if e.code() == Some("DBParameterGroupNotFound") => {}
            Err(e) => return Err(aws_error(format!("reading {PARAMETER_GROUP}"), e)),
        }
        let created = self
            .rds
            .create_db_parameter_group()
            .db_parameter_group_name(PARAMETER_GROUP)
            .db_parameter_group_family(format!("postgres{POSTGRES_VERSION}"))
            .description("mrbill cells: logical replication for moves between placements")
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.code() == Some("DBParameterGroupAlreadyExists") => {}
            Err(e) => return Err(aws_error(format!("creating {PARAMETER_GROUP}"), e)),
        }
        let logical = aws_sdk_rds::types::Parameter::builder()
            .parameter_name("rds.logical_replication")
            .parameter_value("1")
            .apply_method(aws_sdk_rds::types::ApplyMethod::PendingReboot)
            .build();
        self.rds
            .modify_db_parameter_group()
            .db_parameter_group_name(PARAMETER_GROUP)
            .parameters(logical)
            .send()
            .await
            .map_err(|e| aws_error(format!("setting {PARAMETER_GROUP}"), e))?;
        Ok(())
    }

    /// Deletes the instance after a final snapshot (deletion protection is lifted first);
    /// returns the snapshot's identifier once the instance is gone, `None` while it goes.
    pub async fn delete(&self, cell: &Cell, snapshot: &str) -> Result<Option<String>, Error> {
        self.delete_instance(&Self::identifier(cell), snapshot)
            .await
    }

    /// [`Rds::delete`] of instance `id` (a cell's, or one a restore replaced or made). One in a
    /// failed state (`failed`, `incompatible-restore`, …) goes without a final snapshot: RDS
    /// takes none of it, and refuses the deletion that asks for one.
    pub async fn delete_instance(&self, id: &str, snapshot: &str) -> Result<Option<String>, Error> {
        let Some(db) = self.describe(id).await? else {
            return Ok(Some(snapshot.to_owned()));
        };
        if db.db_instance_status() == Some("deleting") {
            return Ok(None);
        }
        let failed = matches!(state_of(&db), InstanceState::Failed(_));
        if failed {
            tracing::warn!(instance = %id, status = ?db.db_instance_status(), "deleting a failed RDS instance without a final snapshot");
        }
        if db.deletion_protection() == Some(true) {
            self.rds
                .modify_db_instance()
                .db_instance_identifier(id)
                .deletion_protection(false)
                .apply_immediately(true)
                .send()
                .await
                .map_err(|e| aws_error(format!("lifting deletion protection of {id}"), e))?;
        }
        match self
            .rds
            .delete_db_instance()
            .db_instance_identifier(id)
            .skip_final_snapshot(failed)
            .set_final_db_snapshot_identifier((!failed).then(|| snapshot.to_owned()))
            .send()
            .await
        {
            Ok(_) => {}
            Err(e) if e.code() == Some("DBInstanceNotFound") => {}
            Err(e) => return Err(aws_error(format!("deleting RDS instance {id}"), e)),
        }
        Ok(self
            .describe(id)
            .await?
            .is_none()
            .then(|| snapshot.to_owned()))
    }

    /// Instance `id` as RDS describes it (its status, tags, latest restorable time).
    pub async fn instance(&self, id: &str) -> Result<Option<Instance>, Error> {
        Ok(self.describe(id).await?.map(|db| Instance {
            state: state_of(&db),
            restore: db
                .tag_list()
                .iter()
                .find(|t| t.key() == Some(RESTORE_TAG))
                .and_then(|t| t.value())
                .map(str::to_owned),
            master_reset: db
                .tag_list()
                .iter()
                .any(|t| t.key() == Some(MASTER_RESET_TAG)),
            restorable_until: db
                .latest_restorable_time()
                .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t.secs()).ok()),
        }))
    }

    /// Renames instance `from` to `to`, at once (RDS reports it `renaming` meanwhile).
    pub async fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        self.rds
            .modify_db_instance()
            .db_instance_identifier(from)
            .new_db_instance_identifier(to)
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| aws_error(format!("renaming RDS instance {from} to {to}"), e))?;
        Ok(())
    }

    /// Creates the cell's instance as instance `source` was at `time` (from RDS's automated
    /// backups: a snapshot and the transaction logs after it), in the cell's foundation, tagged
    /// with the restore's id ([`RESTORE_TAG`]).
    pub async fn restore_to_time(
        &self,
        cell: &Cell,
        outputs: &BTreeMap<String, String>,
        source: &str,
        time: time::OffsetDateTime,
        restore: &str,
    ) -> Result<(), Error> {
        let id = Self::identifier(cell);
        let output = |key: &str| output(outputs, key);
        let mut tags = Self::tags(cell);
        tags.push(
            aws_sdk_rds::types::Tag::builder()
                .key(RESTORE_TAG)
                .value(restore)
                .build(),
        );
        let restored = self
            .rds
            .restore_db_instance_to_point_in_time()
            .source_db_instance_identifier(source)
            .target_db_instance_identifier(&id)
            .restore_time(aws_sdk_rds::primitives::DateTime::from_secs(
                time.unix_timestamp(),
            ))
            .db_instance_class(Self::class(cell))
            .port(5432)
            .multi_az(cell.spec.database.multi_az)
            .deletion_protection(true)
            .db_subnet_group_name(output("DbSubnetGroupName")?)
            .db_parameter_group_name(PARAMETER_GROUP)
            .vpc_security_group_ids(output("DbSecurityGroupId")?)
            .publicly_accessible(false)
            .copy_tags_to_snapshot(true)
            .set_tags(Some(tags))
            .send()
            .await;
        match restored {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("DBInstanceAlreadyExists") => Ok(()),
            Err(e) => Err(aws_error(
                format!("restoring {id} from {source} to {time}"),
                e,
            )),
        }
    }

    /// Creates the cell's instance from `snapshot` (a deleted cell's return: its final
    /// snapshot, copied under the new foundation's key), in the cell's foundation, tagged with
    /// the restore's id ([`RESTORE_TAG`]) and [`MASTER_RESET_TAG`]: it keeps the master
    /// password of the instance it was taken of, which [`Rds::reset_master`] replaces.
    pub async fn restore_snapshot(
        &self,
        cell: &Cell,
        outputs: &BTreeMap<String, String>,
        snapshot: &str,
        restore: &str,
    ) -> Result<(), Error> {
        let id = Self::identifier(cell);
        let output = |key: &str| output(outputs, key);
        let mut tags = Self::tags(cell);
        for (key, value) in [(RESTORE_TAG, restore), (MASTER_RESET_TAG, "pending")] {
            tags.push(
                aws_sdk_rds::types::Tag::builder()
                    .key(key)
                    .value(value)
                    .build(),
            );
        }
        self.ensure_parameter_group().await?;
        let restored = self
            .rds
            .restore_db_instance_from_db_snapshot()
            .db_instance_identifier(&id)
            .db_snapshot_identifier(snapshot)
            .db_instance_class(Self::class(cell))
            .port(5432)
            .multi_az(cell.spec.database.multi_az)
            .deletion_protection(true)
            .db_subnet_group_name(output("DbSubnetGroupName")?)
            .db_parameter_group_name(PARAMETER_GROUP)
            .vpc_security_group_ids(output("DbSecurityGroupId")?)
            .publicly_accessible(false)
            .copy_tags_to_snapshot(true)
            .set_tags(Some(tags))
            .send()
            .await;
        match restored {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("DBInstanceAlreadyExists") => Ok(()),
            Err(e) => Err(aws_error(format!("restoring {id} from {snapshot}"), e)),
        }
    }

    /// Sets instance `id`'s master password to `master`'s (the foundation's secret), then
    /// drops [`MASTER_RESET_TAG`]: RDS applies it at once (`resetting-master-credentials`).
    pub async fn reset_master(&self, id: &str, master: &MasterCredentials) -> Result<(), Error> {
        use secrecy::ExposeSecret;
        let Some(db) = self.describe(id).await? else {
            return Ok(());
        };
        self.rds
            .modify_db_instance()
            .db_instance_identifier(id)
            .master_user_password(master.password.expose_secret())
            .apply_immediately(true)
            .send()
            .await
            .map_err(|e| aws_error(format!("resetting the master password of {id}"), e))?;
        if let Some(arn) = db.db_instance_arn() {
            self.rds
                .remove_tags_from_resource()
                .resource_name(arn)
                .tag_keys(MASTER_RESET_TAG)
                .send()
                .await
                .map_err(|e| aws_error(format!("untagging {id}"), e))?;
        }
        Ok(())
    }

    /// Snapshot `id`'s RDS status (`creating`, `available`, …), `None` when there is none.
    pub async fn snapshot(&self, id: &str) -> Result<Option<String>, Error> {
        match self
            .rds
            .describe_db_snapshots()
            .db_snapshot_identifier(id)
            .send()
            .await
        {
            Ok(out) => Ok(out
                .db_snapshots()
                .first()
                .map(|s| s.status().unwrap_or("creating").to_owned())),
            Err(e) if e.code() == Some("DBSnapshotNotFound") => Ok(None),
            Err(e) => Err(aws_error(format!("describing snapshot {id}"), e)),
        }
    }

    /// Copies snapshot `from` to `to`, encrypted with `key` (a snapshot restores under the key
    /// it is encrypted with: a returning cell's instance takes its new foundation's).
    pub async fn copy_snapshot(&self, from: &str, to: &str, key: &str) -> Result<(), Error> {
        match self
            .rds
            .copy_db_snapshot()
            .source_db_snapshot_identifier(from)
            .target_db_snapshot_identifier(to)
            .kms_key_id(key)
            .copy_tags(true)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("DBSnapshotAlreadyExists") => Ok(()),
            Err(e) => Err(aws_error(format!("copying snapshot {from} to {to}"), e)),
        }
    }

    /// Deletes snapshot `id` (gone already: nothing to do).
    pub async fn delete_snapshot(&self, id: &str) -> Result<(), Error> {
        match self
            .rds
            .delete_db_snapshot()
            .db_snapshot_identifier(id)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("DBSnapshotNotFound") => Ok(()),
            Err(e) => Err(aws_error(format!("deleting snapshot {id}"), e)),
        }
    }
}

/// Output `key` of the cell's foundation stack (subnet group, security group, key).
fn output(outputs: &BTreeMap<String, String>, key: &str) -> Result<String, Error> {
    outputs
        .get(key)
        .cloned()
        .ok_or_else(|| Error::Render(format!("the foundation stack has no output {key}")))
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
