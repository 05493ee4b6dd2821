//! What a deleted cell leaves for its tenant's return, and (in-cluster) that return.
//!
//! The cell's namespace goes with its deletion, and with it the identity Secrets (signing keys,
//! service token, URL key) without which tokens and signed links issued before would not verify
//! again, the Backups naming where each base backup is, and the claims of its two buckets (a
//! provisioner deletes a released claim's bucket, or keeps it but revokes its key: Rook deletes
//! the claim's user). So, once the last base backup is done and before the namespace goes, the
//! finalizer keeps the cell where no cell's pods reach, in the operator's own namespace:
//!
//! ```text
//! bucket kept-cells (the chart's claim)   <cell>/archive/…  the Postgres backups' bucket (base
//!                                                           backups and WAL, every folder)
//!                                         <cell>/media/…    the artifacts' bucket
//! Secret kept-<cell>   identity.json  the identity Secrets (name → type, labels, data)
//!                      backups.json   every completed Backup: name → {serverName, backupId}
//!                                     (merged over the cell's deletions); the deletion's
//!                                     last backup, if it could not be taken, as the newest
//!                                     one with replay (the archive to its end); an rds cell's
//!                                     last backup: name → {snapshot} (its final snapshot, or
//!                                     the one that stands for it: see `rds_snapshot`)
//!                      buckets.json   an rds cell's artifacts buckets [{name, region}], one
//!                                     per life, which its foundation's template retains
//!                                     (nothing is copied)
//!                      deletion       the deletion it is of: the Cell's uid and deletion time
//!                                     (the record is written once each)
//! ```
//!
//! A restore of the deleted tenant (`spec.restore.deleted`) comes back from it: the identity
//! Secrets are created from the record (never generated), the kept copies go into the cell's
//! new buckets (what is missing), and the Cluster is recovered from the copied archive
//! (`render::from_archive`: an external cluster at the new bucket, the restore's backup by its
//! barman id). An rds cell's return is `rds_return.rs`.

use std::collections::BTreeMap;

use cell_model::{Cell, DatabaseEngine};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Resource;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use serde_json::{Value, json};

use crate::apply;
use crate::aws::{Bucket, Objects};
use crate::buckets;
use crate::error::Error;
use crate::render::{self, BACKUP_BUCKET, MEDIA_BUCKET};

use super::Context;

/// The platform's bucket for what deleted cells leave: a claim of the operator's chart in the
/// operator's namespace (its provisioner's ConfigMap and Secret bear the same name).
pub const KEPT_BUCKET: &str = "kept-cells";

const IDENTITY: &str = "identity.json";
const BACKUPS: &str = "backups.json";
const DELETION: &str = "deletion";
/// An `rds` cell's artifacts buckets, retained by its foundations' template (one per life).
const BUCKETS: &str = "buckets.json";

/// The cell's buckets and their folders in the kept bucket.
const COPIES: [(&str, &str); 2] = [(BACKUP_BUCKET, "archive"), (MEDIA_BUCKET, "media")];

/// The record of deleted cell `cell_id`.
pub fn record_name(cell_id: &str) -> String {
    format!("kept-{cell_id}")
}

/// Where a kept base backup is in the archive (its barman server folder and id), and whether a
/// recovery replays the archive to its end from it (it stands in for a last backup that could
/// not be taken).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archived {
    pub server_name: String,
    pub backup_id: String,
    pub replay: bool,
    /// When it ended (`status.stoppedAt`; empty when unknown).
    pub stopped_at: String,
}

fn namespace(ctx: &Context) -> &str {
    &ctx.images.object_store.kept_namespace
}

/// The platform's kept bucket: bound, claimed but not bound yet, or not configured (no claim).
enum Kept {
    Bound(Bucket),
    Pending,
    Absent,
}

async fn kept_bucket(ctx: &Context) -> Result<Kept, Error> {
    let ns = namespace(ctx);
    let coordinates = Api::<ConfigMap>::namespaced(ctx.client.clone(), ns)
        .get_opt(KEPT_BUCKET)
        .await
        .map_err(|source| Error::kube(format!("reading ConfigMap {ns}/{KEPT_BUCKET}"), source))?;
    let secret = Api::<Secret>::namespaced(ctx.client.clone(), ns)
        .get_opt(KEPT_BUCKET)
        .await
        .map_err(|source| Error::kube(format!("reading Secret {ns}/{KEPT_BUCKET}"), source))?;
    let bound = match (coordinates, secret) {
        (Some(coordinates), Some(secret)) => {
            let data = json!(coordinates.data.unwrap_or_default());
            let key = |k: &str| secret_text(&secret, k);
            match (key("AWS_ACCESS_KEY_ID"), key("AWS_SECRET_ACCESS_KEY")) {
                (Some(id), Some(key)) => {
                    buckets::of_claim(&data, (id, key), &ctx.images.object_store, false)
                }
                _ => None,
            }
        }
        _ => None,
    };
    if let Some(bucket) = bound {
        return Ok(Kept::Bound(bucket));
    }
    let (ar, _) = apply::resource("ObjectBucketClaim")?;
    let claim = Api::<kube::api::DynamicObject>::namespaced_with(ctx.client.clone(), ns, &ar)
        .get_opt(KEPT_BUCKET)
        .await
        .map_err(|source| {
            Error::kube(
                format!("reading ObjectBucketClaim {ns}/{KEPT_BUCKET}"),
                source,
            )
        })?;
    Ok(if claim.is_some() {
        Kept::Pending
    } else {
        Kept::Absent
    })
}

/// A Secret's value, from `data` or (as written, before the API server folds it) `stringData`.
fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    let data = secret.data.as_ref().and_then(|d| d.get(key));
    match data {
        Some(bytes) => Some(String::from_utf8_lossy(&bytes.0).into_owned()),
        None => secret.string_data.as_ref()?.get(key).cloned(),
    }
}

fn records(ctx: &Context) -> Api<Secret> {
    Api::namespaced(ctx.client.clone(), namespace(ctx))
}

/// The record's entries, as JSON (absent: `None`).
async fn read(ctx: &Context, cell: &Cell) -> Result<Option<BTreeMap<String, Value>>, Error> {
    let name = record_name(&cell.spec.cell_id);
    let Some(secret) = records(ctx)
        .get_opt(&name)
        .await
        .map_err(|source| Error::kube(format!("reading Secret {name}"), source))?
    else {
        return Ok(None);
    };
    let mut out = BTreeMap::new();
    for key in [IDENTITY, BACKUPS, DELETION, BUCKETS] {
        if let Some(text) = secret_text(&secret, key) {
            let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            out.insert(key.to_owned(), value);
        }
    }
    Ok(Some(out))
}

/// Keeps what the cell leaves, once per deletion: an in-cluster cell's buckets copied into
/// the kept bucket, then its record (an `rds` cell's names its final snapshot and retained
/// bucket); `false` while it cannot yet (the kept bucket's claim is not bound, or a copy
/// failed: a Warning says why, and the deletion waits). Without a kept bucket configured only
/// the record is written (and a Warning says so).
pub(super) async fn keep(ctx: &Context, cell: &Cell) -> Result<bool, Error> {
    // This Cell's deletion (a returned cell is another object: another uid).
    let deletion = format!(
        "{} {}",
        cell.meta().uid.as_deref().unwrap_or_default(),
        cell.meta()
            .deletion_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default()
    );
    let before = read(ctx, cell).await?.unwrap_or_default();
    if before.get(DELETION).and_then(Value::as_str) == Some(deletion.as_str()) {
        return Ok(true);
    }
    let client = &ctx.client;
    let rds = cell.spec.database.engine == DatabaseEngine::Rds;
    if !rds && !copy_buckets(ctx, cell).await? {
        return Ok(false);
    }
    // An identity Secret missing now (a returning cell deleted again early) keeps its earlier copy.
    let mut identity = match before.get(IDENTITY) {
        Some(Value::Object(earlier)) => earlier.clone(),
        _ => serde_json::Map::new(),
    };
    for name in crate::secrets::identity_names(cell) {
        if let Some(secret) = apply::secret_record(client, cell, &name).await? {
            identity.insert(name, secret);
        }
    }
    // Earlier deletions' backups stay listed: the kept archive (or their snapshots) hold them.
    let mut backups = before.get(BACKUPS).cloned().unwrap_or_else(|| json!({}));
    let last = super::backups::final_backup_name(cell);
    // Every bucket the cell's lives had (a return deleted before its copy finished leaves the
    // earlier one holding what the later lacks): a return copies them all.
    let mut buckets = match before.get(BUCKETS) {
        Some(Value::Array(earlier)) => earlier.clone(),
        _ => Vec::new(),
    };
    if rds && let Some(aws) = &ctx.aws {
        if let Some(snapshot) = rds_snapshot(aws, cell, &backups).await? {
            backups[&last] = json!({ "snapshot": snapshot });
        }
        // Retained by the foundation's template; its name whatever state the stack is in.
        if let Some(name) = aws.foundation.outputs(cell).await?.get("BucketName") {
            let bucket = json!({ "name": name, "region": aws.region });
            if !buckets.contains(&bucket) {
                buckets.push(bucket);
            }
        }
    }
    let completed = completed_backups(client, cell).await?;
    for (name, at) in &completed {
        backups[name] = archived_entry(at, false);
    }
    // The catalog records the deletion's last backup by name; one that could not be taken
    // (failed, too slow) is the newest base backup replayed to the archive's end instead.
    if backups.get(&last).is_none()
        && let Some((_, newest)) = completed.iter().max_by_key(|(_, at)| at.stopped_at.clone())
    {
        backups[&last] = archived_entry(newest, true);
    }
    let name = record_name(&cell.spec.cell_id);
    let mut data = json!({
        IDENTITY: Value::Object(identity).to_string(),
        BACKUPS: backups.to_string(),
        DELETION: deletion,
    });
    if !buckets.is_empty() {
        data[BUCKETS] = json!(Value::Array(buckets).to_string());
    }
    let secret = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "labels": { render::TENANT_LABEL: cell.spec.tenant, render::CELL_LABEL: cell.spec.cell_id },
        },
        "type": "Opaque",
        "stringData": data,
    });
    let secret: Secret =
        serde_json::from_value(secret).map_err(|e| Error::Render(e.to_string()))?;
    records(ctx)
        .patch(
            &name,
            &PatchParams::apply(apply::FIELD_MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await
        .map_err(|source| Error::kube(format!("writing Secret {name}"), source))?;
    tracing::info!(cell = %cell.spec.cell_id, record = %name, "what the deleted cell leaves is kept");
    Ok(true)
}

/// A base backup's entry in the record: where it is, whether a recovery replays the archive
/// to its end from it, and when it ended (when known: the artifacts' pruning waits for it).
fn archived_entry(at: &Archived, replay: bool) -> Value {
    let mut entry = json!({ "serverName": at.server_name, "backupId": at.backup_id });
    if replay {
        entry["replay"] = json!(true);
    }
    if !at.stopped_at.is_empty() {
        entry["stoppedAt"] = json!(at.stopped_at);
    }
    entry
}

/// Copies an in-cluster cell's buckets into the kept bucket: `false` while it cannot yet.
async fn copy_buckets(ctx: &Context, cell: &Cell) -> Result<bool, Error> {
    let client = &ctx.client;
    let store = &ctx.images.object_store;
    let ns = namespace(ctx);
    match kept_bucket(ctx).await? {
        Kept::Bound(kept) => {
            for (claim, folder) in COPIES {
                let Some(bucket) = buckets::claimed_as(client, cell, store, claim, false).await?
                else {
                    continue;
                };
                let folder = format!("{}/{folder}/", cell.spec.cell_id);
                let copied = Objects::default()
                    .sync_under((&bucket, ""), (&kept, &folder), false)
                    .await;
                match copied {
                    Ok(n) => {
                        tracing::info!(cell = %cell.spec.cell_id, copied = n, bucket = %bucket.name, %folder, "kept");
                    }
                    Err(e) => {
                        let note = format!(
                            "copying {} into {KEPT_BUCKET}/{folder}: {e}; the deletion waits",
                            bucket.name
                        );
                        super::publish(ctx, cell, EventType::Warning, "KeepFailed", &note).await;
                        return Ok(false);
                    }
                }
            }
        }
        Kept::Pending => {
            let note = format!(
                "ObjectBucketClaim {ns}/{KEPT_BUCKET} is not bound yet; the deletion waits"
            );
            super::publish(ctx, cell, EventType::Warning, "KeepFailed", &note).await;
            return Ok(false);
        }
        Kept::Absent => {
            let note = format!(
                "no ObjectBucketClaim {KEPT_BUCKET} in {ns}: the deleted cell's archive and artifacts are not kept"
            );
            super::publish(ctx, cell, EventType::Warning, "NothingKept", &note).await;
        }
    }
    Ok(true)
}

/// The cell's completed Backups and where each is.
async fn completed_backups(
    client: &kube::Client,
    cell: &Cell,
) -> Result<Vec<(String, Archived)>, Error> {
    Ok(super::backups::backups_of(client, cell)
        .await?
        .into_iter()
        .filter_map(|b| {
            let status = &b.data["status"];
            let archived = Archived {
                server_name: status["serverName"].as_str()?.to_owned(),
                backup_id: status["backupId"].as_str()?.to_owned(),
                replay: false,
                stopped_at: status["stoppedAt"].as_str().unwrap_or_default().to_owned(),
            };
            let name = b.metadata.name?;
            (status["phase"] == "completed").then_some((name, archived))
        })
        .collect())
}

/// The restore's deleted cell's record, or why there is none.
async fn record(
    ctx: &Context,
    cell: &Cell,
) -> Result<Result<BTreeMap<String, Value>, String>, Error> {
    Ok(read(ctx, cell).await?.ok_or_else(|| {
        format!(
            "no record of deleted cell {} (Secret {} in {})",
            cell.spec.cell_id,
            record_name(&cell.spec.cell_id),
            namespace(ctx)
        )
    }))
}

/// A returning cell's identity Secrets, created from its record where missing: `Err` says why
/// they cannot be (no record: nothing is generated in their place).
pub(super) async fn identity(
    ctx: &Context,
    cell: &Cell,
) -> Result<Result<Vec<String>, String>, Error> {
    let missing = apply::missing_identity(&ctx.client, cell).await?;
    if missing.is_empty() {
        return Ok(Ok(Vec::new()));
    }
    let record = match record(ctx, cell).await? {
        Ok(record) => record,
        Err(why) => return Ok(Err(why)),
    };
    let kept = record.get(IDENTITY).cloned().unwrap_or_default();
    let mut created = Vec::new();
    for name in missing {
        let Some(secret) = kept.get(&name).filter(|s| s["data"].is_object()) else {
            return Ok(Err(format!(
                "the record of the deleted cell lacks Secret {name}"
            )));
        };
        apply::create_kept_secret(&ctx.client, cell, &name, secret).await?;
        created.push(name);
    }
    Ok(Ok(created))
}

/// Copies what the kept bucket holds of the deleted cell into the cell's new buckets (what is
/// missing): `Err` says why not yet.
pub(super) async fn retrieve(ctx: &Context, cell: &Cell) -> Result<Result<usize, String>, Error> {
    if let Err(why) = record(ctx, cell).await? {
        return Ok(Err(why));
    }
    let Kept::Bound(kept) = kept_bucket(ctx).await? else {
        return Ok(Err(format!(
            "no bound ObjectBucketClaim {KEPT_BUCKET} in {}",
            namespace(ctx)
        )));
    };
    let store = &ctx.images.object_store;
    let mut copied = 0;
    for (claim, folder) in COPIES {
        let Some(to) = buckets::claimed_as(&ctx.client, cell, store, claim, false).await? else {
            return Ok(Err(format!(
                "waiting for ObjectBucketClaim {claim} to be bound"
            )));
        };
        let folder = format!("{}/{folder}/", cell.spec.cell_id);
        match Objects::default()
            .sync_under((&kept, &folder), (&to, ""), false)
            .await
        {
            Ok(n) => copied += n,
            Err(e) => {
                return Ok(Err(format!(
                    "copying {KEPT_BUCKET}/{folder} into {}: {e}",
                    to.name
                )));
            }
        }
    }
    Ok(Ok(copied))
}

/// Where the restore's backup is in the kept archive (`None`: not a backup the record names).
pub(super) async fn archived(
    ctx: &Context,
    cell: &Cell,
    backup: &str,
) -> Result<Option<Archived>, Error> {
    let Some(record) = read(ctx, cell).await? else {
        return Ok(None);
    };
    let entry = &record.get(BACKUPS).cloned().unwrap_or_default()[backup];
    Ok(
        match (entry["serverName"].as_str(), entry["backupId"].as_str()) {
            (Some(server), Some(id)) => Some(Archived {
                server_name: server.to_owned(),
                backup_id: id.to_owned(),
                replay: entry["replay"] == true,
                stopped_at: String::new(),
            }),
            _ => None,
        },
    )
}

/// The final snapshot of a deleted `rds` cell that the restore's backup names (`None`: not a
/// backup the record names).
pub(super) async fn snapshot(
    ctx: &Context,
    cell: &Cell,
    backup: &str,
) -> Result<Option<String>, Error> {
    let Some(record) = read(ctx, cell).await? else {
        return Ok(None);
    };
    let entry = &record.get(BACKUPS).cloned().unwrap_or_default()[backup];
    Ok(entry["snapshot"].as_str().map(str::to_owned))
}

/// The artifacts buckets a deleted `rds` cell left (retained by its foundations' template),
/// oldest first.
pub(super) async fn rds_buckets(ctx: &Context, cell: &Cell) -> Result<Vec<Bucket>, Error> {
    let Some(record) = read(ctx, cell).await? else {
        return Ok(Vec::new());
    };
    let entries = record.get(BUCKETS).cloned().unwrap_or_default();
    Ok(entries
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entry| {
            Some(Bucket {
                name: entry["name"].as_str()?.to_owned(),
                region: entry["region"].as_str()?.to_owned(),
                store: None,
            })
        })
        .collect())
}

/// The earliest end (unix seconds) of a base backup the cell's record keeps: `None` without a
/// record; `Some(None)` when one's end is not known (nothing may be pruned for it).
pub(super) async fn earliest_end(ctx: &Context, cell: &Cell) -> Result<Option<Option<i64>>, Error> {
    let Some(record) = read(ctx, cell).await? else {
        return Ok(None);
    };
    let backups = record.get(BACKUPS).cloned().unwrap_or_default();
    let mut earliest: Option<i64> = None;
    for entry in backups.as_object().into_iter().flat_map(|m| m.values()) {
        if entry.get("backupId").is_none() {
            continue; // an rds snapshot: no artifacts in this cell's backups' bucket
        }
        let end = entry["stoppedAt"].as_str().and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        });
        match end {
            Some(end) => {
                earliest =
                    Some(earliest.map_or(end.unix_timestamp(), |e| e.min(end.unix_timestamp())))
            }
            None => return Ok(Some(None)),
        }
    }
    Ok(Some(earliest))
}

/// The snapshot a deleted `rds` cell leaves under the deletion's last backup: the instance's
/// final snapshot when there is an instance RDS can snapshot; else that of the instance a
/// restore renamed away (deleted with `…-final`); else the newest an earlier deletion recorded
/// (a return deleted before its instance was made). `None`: nothing holds its database.
async fn rds_snapshot(
    aws: &crate::aws::AwsClients,
    cell: &Cell,
    backups: &Value,
) -> Result<Option<String>, Error> {
    use crate::aws::{InstanceState, Rds};
    let usable = |i: Option<crate::aws::Instance>| {
        i.is_some_and(|i| !matches!(i.state, InstanceState::Failed(_)))
    };
    if usable(aws.rds.instance(&Rds::identifier(cell)).await?) {
        return Ok(Some(super::deletion::final_snapshot(cell)));
    }
    if let Some(restore) = &cell.spec.restore {
        let replaced = Rds::replaced(cell, &restore.id);
        if usable(aws.rds.instance(&replaced).await?) {
            return Ok(Some(format!("{replaced}-final")));
        }
    }
    let earlier = backups
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(name, entry)| {
            let at: i64 = name.strip_prefix("final-")?.parse().ok()?;
            Some((at, entry["snapshot"].as_str()?.to_owned()))
        });
    Ok(earlier.max().map(|(_, snapshot)| snapshot))
}
