//! What a deleted in-cluster cell leaves for its tenant's return, and that return.
//!
//! The cell's namespace goes with its deletion, and with it the identity Secrets (signing keys,
//! service token, URL key) without which tokens and signed links issued before would not verify
//! again, the Backups naming where each base backup is, and the claims' keys. Its buckets stay
//! (the class of what a deleted cell leaves retains them: `ObjectStore::backup_bucket_class`).
//! So, once the last base backup is done and before the namespace goes, the finalizer writes a
//! record of the cell — the Secret `kept-<cell id>` in the operator's own namespace, which no
//! cell's pods reach:
//!
//! ```text
//! identity.json  the identity Secrets (name → key → value)
//! backups.json   every completed Backup: name → {serverName, backupId} (merged over deletions)
//! archive.json   the Postgres backups' bucket: name, region, endpoint, key
//! media.json     the artifacts' bucket: the same
//! deletion       the deletion this record is of (written once per deletion)
//! ```
//!
//! A restore of the deleted tenant (`spec.restore.deleted`) comes back from it: the identity
//! Secrets are created from the record (never generated), the kept buckets are copied into the
//! cell's new ones (what is missing: the archive's folders, the artifacts), and the Cluster is
//! recovered from the copied archive (`render::from_archive`: an external cluster at the new
//! bucket, the restore's backup by its barman id). Not kept: an `rds` cell (its final snapshot
//! and identity are not restored by this path yet).

use std::collections::BTreeMap;

use cell_model::{Cell, DatabaseEngine};
use k8s_openapi::api::core::v1::Secret;
use kube::Resource;
use kube::api::{Api, ListParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::apply;
use crate::aws::Objects;
use crate::buckets;
use crate::error::Error;
use crate::render::{self, BACKUP_BUCKET, MEDIA_BUCKET};

use super::Context;

const IDENTITY: &str = "identity.json";
const BACKUPS: &str = "backups.json";
const ARCHIVE: &str = "archive.json";
const MEDIA: &str = "media.json";
const DELETION: &str = "deletion";

/// The record of deleted cell `cell_id`.
pub fn record_name(cell_id: &str) -> String {
    format!("kept-{cell_id}")
}

/// Where a kept base backup is in the archive (its barman server folder and id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archived {
    pub server_name: String,
    pub backup_id: String,
}

fn records(ctx: &Context) -> Api<Secret> {
    Api::namespaced(ctx.client.clone(), &ctx.images.object_store.kept_namespace)
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
    let parse =
        |text: &str| serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
    let mut out = BTreeMap::new();
    for (key, bytes) in secret.data.unwrap_or_default() {
        out.insert(key, parse(&String::from_utf8_lossy(&bytes.0)));
    }
    // As written, before the API server folds it into `data`.
    for (key, text) in secret.string_data.unwrap_or_default() {
        out.insert(key, parse(&text));
    }
    Ok(Some(out))
}

/// Writes the record of the cell's deletion, once per deletion (an `rds` cell keeps none).
pub(super) async fn keep(ctx: &Context, cell: &Cell) -> Result<(), Error> {
    if cell.spec.database.engine != DatabaseEngine::InCluster {
        return Ok(());
    }
    let deletion = cell
        .meta()
        .deletion_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    let before = read(ctx, cell).await?.unwrap_or_default();
    if before.get(DELETION).and_then(Value::as_str) == Some(deletion.as_str()) {
        return Ok(());
    }
    let client = &ctx.client;
    let mut identity = serde_json::Map::new();
    for name in crate::secrets::identity_names(cell) {
        if let Some(secret) = apply::secret_record(client, cell, &name).await? {
            identity.insert(name, secret);
        }
    }
    // Earlier deletions' backups stay listed: a restored cell's archive holds them (copied).
    let mut backups = before.get(BACKUPS).cloned().unwrap_or_else(|| json!({}));
    for (name, archived) in completed_backups(client, cell).await? {
        backups[name] =
            json!({ "serverName": archived.server_name, "backupId": archived.backup_id });
    }
    let store = &ctx.images.object_store;
    let archive = buckets::claimed_as(client, cell, store, BACKUP_BUCKET, false).await?;
    let media = buckets::claimed_as(client, cell, store, MEDIA_BUCKET, false).await?;
    let mut data = BTreeMap::from([
        (IDENTITY.to_owned(), Value::Object(identity).to_string()),
        (BACKUPS.to_owned(), backups.to_string()),
        (DELETION.to_owned(), deletion),
    ]);
    for (key, bucket) in [(ARCHIVE, archive), (MEDIA, media)] {
        match (bucket, before.get(key)) {
            (Some(bucket), _) => {
                data.insert(key.to_owned(), buckets::secret_data(&bucket).to_string())
            }
            (None, Some(earlier)) => data.insert(key.to_owned(), earlier.to_string()),
            (None, None) => None,
        };
    }
    let name = record_name(&cell.spec.cell_id);
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
    tracing::info!(cell = %cell.spec.cell_id, record = %name, "what the deleted cell leaves is recorded");
    Ok(())
}

/// The cell's completed Backups and where each is.
async fn completed_backups(
    client: &kube::Client,
    cell: &Cell,
) -> Result<Vec<(String, Archived)>, Error> {
    let ns = render::namespace(cell);
    let (ar, _) = apply::resource("Backup")?;
    let listed = Api::<kube::api::DynamicObject>::namespaced_with(client.clone(), &ns, &ar)
        .list(&ListParams::default())
        .await
        .map_err(|source| Error::kube(format!("listing Backups in {ns}"), source))?;
    Ok(listed
        .items
        .into_iter()
        .filter_map(|b| {
            let status = &b.data["status"];
            let archived = Archived {
                server_name: status["serverName"].as_str()?.to_owned(),
                backup_id: status["backupId"].as_str()?.to_owned(),
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
            ctx.images.object_store.kept_namespace
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

/// Copies the deleted cell's kept buckets into the cell's new ones (what is missing): `Err`
/// says why not yet.
pub(super) async fn retrieve(ctx: &Context, cell: &Cell) -> Result<Result<usize, String>, Error> {
    let record = match record(ctx, cell).await? {
        Ok(record) => record,
        Err(why) => return Ok(Err(why)),
    };
    let store = &ctx.images.object_store;
    let mut copied = 0;
    for (key, claim) in [(ARCHIVE, BACKUP_BUCKET), (MEDIA, MEDIA_BUCKET)] {
        let Some(from) = record.get(key).and_then(buckets::from_data) else {
            continue;
        };
        let Some(to) = buckets::claimed_as(&ctx.client, cell, store, claim, false).await? else {
            return Ok(Err(format!(
                "waiting for ObjectBucketClaim {claim} to be bound"
            )));
        };
        match Objects::default().sync(&from, &to, false).await {
            Ok(n) => copied += n,
            Err(e) => {
                return Ok(Err(format!(
                    "copying bucket {} into {}: {e}",
                    from.name, to.name
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
            }),
            _ => None,
        },
    )
}
