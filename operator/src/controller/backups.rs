//! An in-cluster cell's Postgres backups (`render/backups.rs`): archiving is rendered once the
//! backups' bucket claim is bound, `BackupsReady` reports CNPG's continuous archiving (not part
//! of `Ready`: a cell whose archive lags still serves, and says so), and a deleted cell gets a
//! last base backup before its namespace goes.
//!
//! A backup holds the cell's artifacts too: once a base backup completes, the media bucket is
//! copied into the backups' bucket under `media/` — never deleting, so what a backup's rows
//! name stays there after media deletes it — and `status.objectsBackedUp` names that backup
//! (the control plane's backup is done then). A restore copies them back before the database
//! is replaced (what the restored rows name exists again; artifacts written after the moment
//! stay, unreferenced). What no kept backup can name any more is pruned from `media/` as the
//! backups expire ([`retire_objects`]).

use std::time::Duration;

use cell_model::{Cell, CellStatus, DatabaseEngine};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;

use crate::apply;
use crate::error::Error;
use crate::render;

use super::Context;
use super::observe::set;

/// `desired` with archiving once the backups' claim is bound.
pub(super) async fn with_backups(
    ctx: &Context,
    cell: &Cell,
    desired: Vec<Value>,
) -> Result<Vec<Value>, Error> {
    if cell.spec.database.engine != DatabaseEngine::InCluster {
        return Ok(desired);
    }
    let config = apply::get(&ctx.client, cell, "ConfigMap", render::BACKUP_BUCKET).await?;
    let Some(config) = config else {
        return Ok(desired);
    };
    let store = &ctx.images.object_store;
    let desired = render::with_backups(cell, desired, &config, store);
    // A deleted cell's return recovers from its kept archive (copied into this bucket), and so
    // does a later restore from a backup its namespace no longer has.
    match &cell.spec.restore {
        Some(restore)
            if restore.deleted
                || apply::get(&ctx.client, cell, "Backup", &restore.backup)
                    .await?
                    .is_none() =>
        {
            match super::kept::archived(ctx, cell, &restore.backup).await? {
                Some(at) => Ok(render::from_archive(
                    desired,
                    &config,
                    store,
                    (&at.server_name, &at.backup_id),
                    at.replay,
                )),
                None => Ok(desired),
            }
        }
        _ => Ok(desired),
    }
}

/// The backups' bucket's folder of the artifacts kept with the base backups.
const OBJECTS_FOLDER: &str = "media/";

/// The backups' bucket's note of kept artifacts the media bucket no longer holds, and since
/// when (outside [`OBJECTS_FOLDER`], so a restore does not copy it back).
const GONE: &str = "media-gone.json";

/// Keeps the artifacts with the newest completed base backup, once per backup (see the module
/// docs); a copy that fails is tried again on the next reconcile (and the status waits).
pub(super) async fn keep_objects(
    ctx: &Context,
    cell: &Cell,
    status: &mut CellStatus,
) -> Result<(), Error> {
    if cell.spec.database.engine != DatabaseEngine::InCluster {
        return Ok(());
    }
    let Some(newest) = newest_backup(ctx, cell).await? else {
        return Ok(());
    };
    if status.objects_backed_up.as_deref() == Some(newest.as_str()) {
        return Ok(());
    }
    let (client, store) = (&ctx.client, &ctx.images.object_store);
    let media =
        crate::buckets::claimed_as(client, cell, store, render::MEDIA_BUCKET, false).await?;
    let archive =
        crate::buckets::claimed_as(client, cell, store, render::BACKUP_BUCKET, false).await?;
    if let (Some(media), Some(archive)) = (media, archive) {
        let copied = crate::aws::Objects::default()
            .sync_under((&media, ""), (&archive, OBJECTS_FOLDER), false)
            .await;
        match copied {
            Ok(n) => {
                tracing::info!(cell = %cell.spec.cell_id, backup = %newest, objects = n, "artifacts kept with the backup");
                // Pruning is housekeeping: one that fails is tried with the next backup.
                if let Err(e) = retire_objects(ctx, cell, (&media, &archive)).await {
                    tracing::warn!(cell = %cell.spec.cell_id, error = %e, "retiring artifacts no backup names");
                }
            }
            Err(e) => {
                tracing::warn!(cell = %cell.spec.cell_id, backup = %newest, error = %e, "keeping the artifacts with the backup");
                // Said where an operator looks (the control plane's backup waits meanwhile).
                let message = format!("keeping the artifacts with Backup {newest}: {e}");
                set(status, "BackupsReady", false, "ArtifactsNotKept", &message);
                return Ok(());
            }
        }
    }
    // (A cell without both buckets bound has no artifacts to keep.)
    status.objects_backed_up = Some(newest);
    Ok(())
}

/// Deletes from the backups' `media/` folder what no kept backup can name: an artifact the
/// media bucket no longer holds is noted in [`GONE`] (key → since when, unix seconds) the
/// first time a keeping sees it missing, and deleted once it was missing before the oldest
/// completed backup ended (every moment a restore can bring back is after that end, when its
/// rows no longer named it; "since" is when it was seen missing, never earlier than it went).
/// An artifact back in the media bucket is struck from the note. Returns how many went.
async fn retire_objects(
    ctx: &Context,
    cell: &Cell,
    (media, archive): (&crate::aws::Bucket, &crate::aws::Bucket),
) -> Result<usize, Error> {
    let objects = crate::aws::Objects::default();
    let live: std::collections::BTreeSet<String> =
        objects.keys_under(media, "").await?.into_iter().collect();
    let kept = objects.keys_under(archive, OBJECTS_FOLDER).await?;
    let noted = objects.read_text(archive, GONE).await?;
    let mut gone: std::collections::BTreeMap<String, i64> = noted
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or_default();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let oldest = backups_of(&ctx.client, cell)
        .await?
        .into_iter()
        .filter(|b| b.data["status"]["phase"] == "completed")
        .filter_map(|b| {
            let stopped = b.data["status"]["stoppedAt"].as_str()?;
            time::OffsetDateTime::parse(stopped, &Rfc3339).ok()
        })
        .map(|t| t.unix_timestamp())
        .min();
    // A returned cell may still be restored from the backups its deletions kept.
    let oldest = match super::kept::earliest_end(ctx, cell).await? {
        None => oldest,
        Some(None) => None,
        Some(Some(kept)) => Some(oldest.map_or(kept, |o| o.min(kept))),
    };
    let before = gone.clone();
    gone.retain(|key, _| !live.contains(key) && kept.contains(key));
    let mut retired = Vec::new();
    for key in kept.iter().filter(|k| !live.contains(*k)) {
        let since = *gone.entry(key.clone()).or_insert(now);
        if oldest.is_some_and(|oldest| since < oldest) {
            retired.push(format!("{OBJECTS_FOLDER}{key}"));
        }
    }
    // The note first: if a deletion then fails, the object is noted afresh next time (retired
    // later, never early).
    for key in &retired {
        gone.remove(&key[OBJECTS_FOLDER.len()..]);
    }
    if gone != before {
        let text = serde_json::to_string(&gone).map_err(|e| Error::Render(e.to_string()))?;
        objects.write_text(archive, GONE, text).await?;
    }
    objects.delete_keys(archive, &retired).await?;
    if !retired.is_empty() {
        tracing::info!(cell = %cell.spec.cell_id, retired = retired.len(), "artifacts no kept backup names are deleted");
    }
    Ok(retired.len())
}

/// Copies the artifacts kept with the base backups back into the media bucket (what it lacks):
/// `Err` says why not (yet).
pub(super) async fn objects_back(
    ctx: &Context,
    cell: &Cell,
) -> Result<Result<usize, String>, Error> {
    let (client, store) = (&ctx.client, &ctx.images.object_store);
    let media =
        crate::buckets::claimed_as(client, cell, store, render::MEDIA_BUCKET, false).await?;
    let archive =
        crate::buckets::claimed_as(client, cell, store, render::BACKUP_BUCKET, false).await?;
    let (Some(media), Some(archive)) = (media, archive) else {
        return Ok(Ok(0));
    };
    Ok(crate::aws::Objects::default()
        .sync_under((&archive, OBJECTS_FOLDER), (&media, ""), false)
        .await
        .map_err(|e| format!("copying the artifacts kept with the backups back: {e}")))
}

/// The cell's newest completed `Backup` (by its end).
async fn newest_backup(ctx: &Context, cell: &Cell) -> Result<Option<String>, Error> {
    Ok(backups_of(&ctx.client, cell)
        .await?
        .into_iter()
        .filter(|b| b.data["status"]["phase"] == "completed")
        .filter_map(|b| {
            let stopped = b.data["status"]["stoppedAt"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            Some((stopped, b.metadata.name?))
        })
        .max()
        .map(|(_, name)| name))
}

/// The cell's CloudNativePG `Backup`s.
pub(super) async fn backups_of(
    client: &kube::Client,
    cell: &Cell,
) -> Result<Vec<kube::api::DynamicObject>, Error> {
    let ns = render::namespace(cell);
    let (ar, _) = apply::resource("Backup")?;
    let listed = kube::Api::<kube::api::DynamicObject>::namespaced_with(client.clone(), &ns, &ar)
        .list(&kube::api::ListParams::default())
        .await
        .map_err(|source| Error::kube(format!("listing Backups in {ns}"), source))?;
    Ok(listed.items)
}

/// Sets `BackupsReady` from the claim and the Cluster's `ContinuousArchiving` condition.
pub(super) async fn observe(
    client: &kube::Client,
    cell: &Cell,
    status: &mut CellStatus,
) -> Result<(), Error> {
    if cell.spec.database.engine != DatabaseEngine::InCluster {
        return Ok(());
    }
    let claim = apply::get(client, cell, "ObjectBucketClaim", render::BACKUP_BUCKET).await?;
    let phase = claim
        .as_ref()
        .and_then(|c| c["status"]["phase"].as_str())
        .unwrap_or("no status yet");
    if phase != "Bound" {
        let message = format!("ObjectBucketClaim {}: {phase}", render::BACKUP_BUCKET);
        set(status, "BackupsReady", false, "BucketPending", &message);
        return Ok(());
    }
    let cluster = apply::get(client, cell, "Cluster", render::POSTGRES_CLUSTER).await?;
    let cluster_status = cluster.as_ref().map(|c| &c["status"]);
    let archiving = cluster_status
        .and_then(|s| s["conditions"].as_array())
        .and_then(|c| c.iter().find(|c| c["type"] == "ContinuousArchiving"));
    let last = cluster_status
        .and_then(|s| s["lastSuccessfulBackup"].as_str())
        .map_or_else(
            || "no base backup yet".to_owned(),
            |t| format!("last base backup {t}"),
        );
    match archiving {
        Some(c) if c["status"] == "True" => {
            set(status, "BackupsReady", true, "Archiving", &last);
        }
        Some(c) => {
            let why = c["message"].as_str().unwrap_or_default();
            set(status, "BackupsReady", false, "ArchivingFailed", why);
        }
        None => set(
            status,
            "BackupsReady",
            false,
            "ArchivingPending",
            "CloudNativePG reports no WAL archived yet",
        ),
    }
    Ok(())
}

/// The annotation on a last base backup saying when it was asked for.
const ASKED_AT: &str = "mrbill.dev/asked-at";

/// How long a deletion or a restore waits for a last base backup before it goes on without.
const LAST_BACKUP_PATIENCE: Duration = Duration::from_secs(30 * 60);

/// Before a deleted in-cluster cell's namespace goes: a last base backup (a CNPG `Backup`), so
/// its backups' bucket holds the cell up to its deletion. `true` once it is done with (see
/// [`last_backup`]).
pub(super) async fn final_backup(ctx: &Context, cell: &Cell) -> Result<bool, Error> {
    last_backup(ctx, cell, &final_backup_name(cell), "the deletion").await
}

/// The deletion's last base backup: the name the control plane gave it (so its catalog
/// records it), else `final-<deletion time>`.
pub(super) fn final_backup_name(cell: &Cell) -> String {
    let named = cell.annotations().get(cell_model::FINAL_BACKUP_ANNOTATION);
    match named.filter(|n| is_name(n)) {
        Some(name) => name.clone(),
        None => {
            let deleted = cell
                .meta()
                .deletion_timestamp
                .as_ref()
                .map(|t| t.0.as_second())
                .unwrap_or_default();
            format!("final-{deleted}")
        }
    }
}

/// Whether `name` can name a `Backup` (a DNS subdomain: lower-case alphanumerics and `-`).
fn is_name(name: &str) -> bool {
    (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Whether the cell's in-cluster Postgres archives and runs (a last base backup can be taken).
async fn archiving(ctx: &Context, cell: &Cell) -> Result<bool, Error> {
    if cell.spec.database.engine != DatabaseEngine::InCluster {
        return Ok(false);
    }
    let Some(cluster) = apply::get(&ctx.client, cell, "Cluster", render::POSTGRES_CLUSTER).await?
    else {
        return Ok(false);
    };
    let archives = !cluster["spec"]["backup"]["barmanObjectStore"].is_null();
    let up = cluster["status"]["readyInstances"].as_i64().unwrap_or(0) > 0;
    Ok(archives && up)
}

/// Whether [`last_backup`] of `name` would ask for it now (not asked for yet, and it can be
/// taken).
pub(super) async fn would_ask(ctx: &Context, cell: &Cell, name: &str) -> Result<bool, Error> {
    Ok(archiving(ctx, cell).await?
        && apply::get(&ctx.client, cell, "Backup", name)
            .await?
            .is_none())
}

/// A last base backup `name` of the cell's Cluster before `what` goes on: it ends with the WAL
/// switched and archived, so the archive holds everything written until then. `true` once that
/// backup completed, failed (a warning: the archive still holds what was archived), cannot be
/// taken (no archiving, no ready instance, no Cluster), or has run for
/// [`LAST_BACKUP_PATIENCE`]; `false` while it runs (asked for on the first call).
pub(super) async fn last_backup(
    ctx: &Context,
    cell: &Cell,
    name: &str,
    what: &str,
) -> Result<bool, Error> {
    if !archiving(ctx, cell).await? {
        return Ok(true);
    }
    let now = time::OffsetDateTime::now_utc();
    let Some(backup) = apply::get(&ctx.client, cell, "Backup", name).await? else {
        let mut backup = render::final_backup(cell, name);
        // When it was asked for, by us: the patience counts from there.
        backup["metadata"]["annotations"][ASKED_AT] =
            now.format(&Rfc3339).unwrap_or_default().into();
        apply::apply(&ctx.client, cell, backup).await?;
        tracing::info!(cell = %cell.spec.cell_id, backup = %name, "last base backup before {what}");
        return Ok(false);
    };
    let asked = backup["metadata"]["annotations"][ASKED_AT]
        .as_str()
        .and_then(|t| time::OffsetDateTime::parse(t, &Rfc3339).ok())
        .unwrap_or(now);
    let waited = (now - asked).unsigned_abs();
    match backup["status"]["phase"].as_str() {
        Some("completed") => {
            tracing::info!(cell = %cell.spec.cell_id, backup = %name, "last base backup taken");
            Ok(true)
        }
        Some("failed") => {
            let why = backup["status"]["error"]
                .as_str()
                .unwrap_or("no reason given");
            let note =
                format!("the last base backup {name} failed ({why}); {what} goes on without it");
            super::publish(ctx, cell, EventType::Warning, "LastBackupFailed", &note).await;
            Ok(true)
        }
        _ if waited > LAST_BACKUP_PATIENCE => {
            let note = format!(
                "the last base backup {name} did not finish in 30 min; {what} goes on without it"
            );
            super::publish(ctx, cell, EventType::Warning, "LastBackupFailed", &note).await;
            Ok(true)
        }
        _ => Ok(false),
    }
}
