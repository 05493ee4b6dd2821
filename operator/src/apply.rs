//! Writing a cell's objects to the API server: server-side apply under one field manager with
//! the Cell as controlling owner, Secrets created only when missing, and pruning of objects a
//! cell no longer wants (an autoscaler while suspended, Meilisearch after switching to the
//! embedded engine).

use std::collections::BTreeSet;

use cell_model::Cell;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch,
    PatchParams, PostParams,
};
use kube::{Client, Resource, ResourceExt};
use serde_json::Value;

use crate::error::Error;
use crate::render::{CELL_LABEL, SERVICE_LABEL, TENANT_LABEL, namespace};

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "cell-operator";
/// `app.kubernetes.io/managed-by` value on everything the operator renders.
pub const MANAGED_BY: &str = "cell-operator";

/// The kinds the operator writes: `(apiVersion, kind, plural, namespaced)`. The Helm chart's
/// RBAC grants exactly these (kept in step by a test).
pub const KINDS: [(&str, &str, &str, bool); 23] = [
    ("v1", "Namespace", "namespaces", false),
    (
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebindings",
        true,
    ),
    ("v1", "ServiceAccount", "serviceaccounts", true),
    ("v1", "ResourceQuota", "resourcequotas", true),
    ("v1", "LimitRange", "limitranges", true),
    ("v1", "Secret", "secrets", true),
    ("v1", "ConfigMap", "configmaps", true),
    ("v1", "Service", "services", true),
    (
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
    ),
    ("apps/v1", "StatefulSet", "statefulsets", true),
    ("postgresql.cnpg.io/v1", "Cluster", "clusters", true),
    ("postgresql.cnpg.io/v1", "Database", "databases", true),
    ("postgresql.cnpg.io/v1", "Publication", "publications", true),
    (
        "postgresql.cnpg.io/v1",
        "Subscription",
        "subscriptions",
        true,
    ),
    // No longer rendered (the control plane asks for base backups): listed so that one an
    // older operator made is pruned.
    (
        "postgresql.cnpg.io/v1",
        "ScheduledBackup",
        "scheduledbackups",
        true,
    ),
    ("postgresql.cnpg.io/v1", "Backup", "backups", true),
    (
        "objectbucket.io/v1alpha1",
        "ObjectBucketClaim",
        "objectbucketclaims",
        true,
    ),
    ("apps/v1", "Deployment", "deployments", true),
    ("batch/v1", "Job", "jobs", true),
    (
        "multicluster.x-k8s.io/v1alpha1",
        "ServiceExport",
        "serviceexports",
        true,
    ),
    (
        "policy/v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
    ),
    (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
    ),
    (
        "monitoring.coreos.com/v1",
        "PodMonitor",
        "podmonitors",
        true,
    ),
];

/// Kinds a cell has only under some specs; objects of these kinds that the cell no longer
/// renders are deleted. (Namespace-wide kinds every cell has are never pruned.)
const PRUNED: [&str; 10] = [
    "PodMonitor",
    "ConfigMap",
    "Service",
    "NetworkPolicy",
    "StatefulSet",
    "HorizontalPodAutoscaler",
    "Job",
    "Publication",
    "Subscription",
    "ServiceExport",
];

/// The API resource of a kind the operator manages, and whether it is namespaced.
pub fn resource(kind: &str) -> Result<(ApiResource, bool), Error> {
    let (api_version, kind, plural, namespaced) = KINDS
        .iter()
        .find(|k| k.1 == kind)
        .ok_or_else(|| Error::Render(format!("the operator does not manage {kind}")))?;
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Ok((ApiResource::from_gvk_with_plural(&gvk, plural), *namespaced))
}

fn api(client: &Client, kind: &str, ns: &str) -> Result<Api<DynamicObject>, Error> {
    let (ar, namespaced) = resource(kind)?;
    Ok(if namespaced {
        Api::namespaced_with(client.clone(), ns, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    })
}

fn field<'a>(object: &'a Value, key: &str) -> &'a str {
    match key {
        "kind" => object["kind"].as_str().unwrap_or_default(),
        _ => object["metadata"][key].as_str().unwrap_or_default(),
    }
}

/// `object` with the Cell as its controlling owner (garbage-collected with it).
fn owned(cell: &Cell, mut object: Value) -> Result<Value, Error> {
    let owner = cell
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Render("the Cell has no uid yet".into()))?;
    object["metadata"]["ownerReferences"] =
        serde_json::to_value([owner]).map_err(|e| Error::Render(e.to_string()))?;
    Ok(object)
}

/// Server-side applies `object` (force: the operator owns every field it sets).
pub async fn apply(client: &Client, cell: &Cell, object: Value) -> Result<(), Error> {
    let kind = field(&object, "kind").to_owned();
    let name = field(&object, "name").to_owned();
    let ns = field(&object, "namespace").to_owned();
    let object = owned(cell, object)?;
    api(client, &kind, &ns)?
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&object),
        )
        .await
        .map_err(|source| Error::kube(format!("applying {kind} {ns}/{name}"), source))?;
    Ok(())
}

/// Creates each of the cell's Secrets that does not exist yet. Values are generated only when
/// one is missing, and an existing Secret is never written: keys are not rotated by a
/// reconcile. Returns the names created.
pub async fn create_missing_secrets(client: &Client, cell: &Cell) -> Result<Vec<String>, Error> {
    let (secrets, existing) = existing_secrets(client, cell).await?;
    // A migration's target never makes an identity of its own: it gets its source's.
    let copied = match crate::render::migration::target_phase(cell) {
        Some(_) => crate::secrets::identity_names(cell),
        None => Vec::new(),
    };
    let wanted = crate::secrets::names(cell);
    if wanted
        .iter()
        .all(|name| existing.contains(name) || copied.contains(name))
    {
        return Ok(Vec::new());
    }
    let generated = crate::secrets::generate(cell)
        .map_err(|e| Error::Render(format!("{e:#}")))?
        .into_iter()
        .filter(|s| !copied.iter().any(|name| name == field(s, "name")))
        .collect();
    create_absent(&secrets, cell, &existing, generated).await
}

/// A migration target's identity Secrets that its source's have not been copied into yet.
pub async fn missing_identity(client: &Client, cell: &Cell) -> Result<Vec<String>, Error> {
    let (_, existing) = existing_secrets(client, cell).await?;
    Ok(crate::secrets::identity_names(cell)
        .into_iter()
        .filter(|name| !existing.contains(name))
        .collect())
}

/// A migration source's [`crate::render::migration::MIGRATOR_SECRET`], made once: with its
/// Postgres CA and its claimed bucket in-cluster (`store`), with its instance's address and
/// its bucket (`rds_instance`) on RDS.
pub async fn create_missing_migrator_secret(
    client: &Client,
    cell: &Cell,
    rds_instance: Option<(&str, &crate::aws::Bucket)>,
    store: &crate::render::ObjectStore,
) -> Result<Vec<String>, Error> {
    let (secrets, existing) = existing_secrets(client, cell).await?;
    if existing.contains(crate::render::migration::MIGRATOR_SECRET) {
        return Ok(Vec::new());
    }
    let migrator = match rds_instance {
        Some((host, bucket)) => crate::secrets::rds_migrator(cell, host, bucket),
        None => {
            let ca = secret_value(client, cell, crate::render::POSTGRES_TLS_SECRET, "ca.crt")
                .await?
                .ok_or_else(|| Error::Render("the cell's Postgres CA is not there yet".into()))?;
            let bucket = crate::buckets::claimed(client, cell, store, true)
                .await?
                .ok_or_else(|| Error::Render("the cell's bucket is not bound yet".into()))?;
            crate::secrets::migrator(cell, &ca, &bucket)
        }
    };
    create_absent(&secrets, cell, &existing, vec![migrator]).await
}

/// The cell's Secrets API and the names of the Secrets it already has.
async fn existing_secrets(
    client: &Client,
    cell: &Cell,
) -> Result<(Api<DynamicObject>, BTreeSet<String>), Error> {
    let ns = namespace(cell);
    let secrets = api(client, "Secret", &ns)?;
    let selector = format!("{CELL_LABEL}={}", cell.spec.cell_id);
    let existing = secrets
        .list_metadata(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| Error::kube(format!("listing Secrets in {ns}"), source))?
        .items;
    report_certificates(cell, &existing);
    let existing = existing.iter().map(ResourceExt::name_any).collect();
    Ok((secrets, existing))
}

/// The expiry of the cell's certificates (its Postgres CA and server certificate, from their
/// Secret's annotation), for the `CellCertificateExpiring` alert. Secrets made before the
/// annotation existed report nothing.
fn report_certificates<K: ResourceExt>(cell: &Cell, secrets: &[K]) {
    for secret in secrets {
        let not_after = secret
            .annotations()
            .get(crate::secrets::NOT_AFTER)
            .and_then(|v| v.parse::<f64>().ok());
        if let Some(not_after) = not_after {
            metrics::gauge!(
                "mrbill_cell_certificate_expiry_timestamp_seconds",
                "tenant" => cell.spec.tenant.clone(),
                "cell" => cell.spec.cell_id.clone(),
                "secret" => secret.name_any(),
            )
            .set(not_after);
        }
    }
}

/// Creates those of `generated` that are not in `existing` (create-only, like every Secret).
async fn create_absent(
    secrets: &Api<DynamicObject>,
    cell: &Cell,
    existing: &BTreeSet<String>,
    generated: Vec<Value>,
) -> Result<Vec<String>, Error> {
    let ns = namespace(cell);
    let mut created = Vec::new();
    for secret in generated {
        let name = field(&secret, "name").to_owned();
        if existing.contains(&name) {
            continue;
        }
        let object: DynamicObject = serde_json::from_value(owned(cell, secret)?)
            .map_err(|e| Error::Render(e.to_string()))?;
        match secrets.create(&PostParams::default(), &object).await {
            Ok(_) => created.push(name),
            // Created meanwhile (or relabelled by hand): it exists, so it stays as it is.
            Err(kube::Error::Api(status)) if status.is_already_exists() => {}
            Err(source) => {
                return Err(Error::kube(format!("creating Secret {ns}/{name}"), source));
            }
        }
    }
    Ok(created)
}

/// Secret `name` of the cell as `{type, labels, data}`, its values decoded (absent: `None`):
/// what a deleted cell's record keeps of it.
pub async fn secret_record(
    client: &Client,
    cell: &Cell,
    name: &str,
) -> Result<Option<Value>, Error> {
    use base64::Engine as _;
    let Some(secret) = get(client, cell, "Secret", name).await? else {
        return Ok(None);
    };
    let mut data = serde_json::Map::new();
    for (key, encoded) in secret["data"].as_object().into_iter().flatten() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded.as_str().unwrap_or_default())
            .map_err(|e| Error::Render(format!("Secret {name}/{key} is not base64: {e}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| Error::Render(format!("Secret {name}/{key} is not UTF-8: {e}")))?;
        data.insert(key.clone(), Value::String(text));
    }
    // As written, before the API server folds it into `data` (as `secret_value` reads it).
    for (key, text) in secret["stringData"].as_object().into_iter().flatten() {
        data.insert(key.clone(), text.clone());
    }
    Ok(Some(serde_json::json!({
        "type": secret["type"],
        "labels": secret["metadata"]["labels"],
        "data": data,
    })))
}

/// Creates Secret `name` in the cell's namespace from a [`secret_record`] (create-only: one
/// that exists stays as it is).
pub async fn create_kept_secret(
    client: &Client,
    cell: &Cell,
    name: &str,
    record: &Value,
) -> Result<(), Error> {
    let (secrets, existing) = existing_secrets(client, cell).await?;
    let secret = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": record["type"].as_str().unwrap_or("Opaque"),
        "metadata": {
            "name": name,
            "namespace": namespace(cell),
            "labels": record["labels"],
            "annotations": { crate::secrets::GENERATED_ONCE: "true" },
        },
        "stringData": record["data"],
    });
    create_absent(&secrets, cell, &existing, vec![secret]).await?;
    Ok(())
}

/// Creates an `rds` cell's database Secrets that do not exist yet (see `secrets::rds`).
pub async fn create_missing_rds_secrets(
    client: &Client,
    cell: &Cell,
    host: &str,
    port: i32,
) -> Result<Vec<String>, Error> {
    let (secrets, existing) = existing_secrets(client, cell).await?;
    if crate::secrets::rds_names()
        .iter()
        .all(|name| existing.contains(name))
    {
        return Ok(Vec::new());
    }
    let generated = crate::secrets::rds(cell, host, port);
    create_absent(&secrets, cell, &existing, generated).await
}

/// Creates the cell's copy of the platform's SMTP URL if it does not exist yet.
pub async fn create_missing_smtp_secret(
    client: &Client,
    cell: &Cell,
    mail: &crate::render::Mail,
) -> Result<Vec<String>, Error> {
    let (secrets, existing) = existing_secrets(client, cell).await?;
    if existing.contains(crate::render::SMTP_SECRET) {
        return Ok(Vec::new());
    }
    let smtp = crate::secrets::smtp(cell, mail);
    create_absent(&secrets, cell, &existing, vec![smtp]).await
}

/// Deletes the cell's objects of the [`PRUNED`] kinds that `desired` no longer contains.
/// Returns `kind/name` of each deleted object.
pub async fn prune(client: &Client, cell: &Cell, desired: &[Value]) -> Result<Vec<String>, Error> {
    let ns = namespace(cell);
    let selector = format!(
        "{CELL_LABEL}={},app.kubernetes.io/managed-by={MANAGED_BY}",
        cell.spec.cell_id
    );
    let mut deleted = Vec::new();
    for kind in PRUNED {
        let wanted: BTreeSet<&str> = desired
            .iter()
            .filter(|o| field(o, "kind") == kind)
            .map(|o| field(o, "name"))
            .collect();
        let api = api(client, kind, &ns)?;
        let present = match api
            .list_metadata(&ListParams::default().labels(&selector))
            .await
        {
            Ok(list) => list,
            // A kind this cluster does not serve (CNPG's, where only rds cells run): none.
            Err(kube::Error::Api(status)) if status.is_not_found() => continue,
            Err(source) => return Err(Error::kube(format!("listing {kind}s in {ns}"), source)),
        };
        for object in present.items {
            let name = object.name_any();
            if wanted.contains(name.as_str()) {
                continue;
            }
            match api.delete(&name, &DeleteParams::background()).await {
                Ok(_) => deleted.push(format!("{kind}/{name}")),
                Err(kube::Error::Api(status)) if status.is_not_found() => {}
                Err(source) => {
                    return Err(Error::kube(format!("deleting {kind} {ns}/{name}"), source));
                }
            }
        }
    }
    Ok(deleted)
}

/// Label on a PersistentVolume kept after its cell was deleted: the claim it served.
pub const RETAINED_FROM_LABEL: &str = "mrbill.dev/retained-from";

/// Before a cell's namespace goes: its Postgres volumes are switched to `Retain` and labelled
/// with tenant, cell and claim, so deleting a tenant never deletes its data — the volumes stay
/// (`Released`) until someone deletes them on purpose. Returns the volumes' names.
pub async fn retain_database_volumes(client: &Client, cell: &Cell) -> Result<Vec<String>, Error> {
    let ns = namespace(cell);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &ns);
    let selector = format!(
        "{CELL_LABEL}={},{SERVICE_LABEL}=postgres",
        cell.spec.cell_id
    );
    let present = match claims.list(&ListParams::default().labels(&selector)).await {
        Ok(list) => list.items,
        Err(kube::Error::Api(status)) if status.is_not_found() => Vec::new(),
        Err(source) => {
            return Err(Error::kube(
                format!("listing PersistentVolumeClaims in {ns}"),
                source,
            ));
        }
    };
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let mut kept = Vec::new();
    for claim in present {
        let Some(volume) = claim.spec.as_ref().and_then(|s| s.volume_name.clone()) else {
            continue; // never bound: no data
        };
        let patch = serde_json::json!({
            "metadata": { "labels": {
                TENANT_LABEL: cell.spec.tenant,
                CELL_LABEL: cell.spec.cell_id,
                RETAINED_FROM_LABEL: claim.name_any(),
            }},
            "spec": { "persistentVolumeReclaimPolicy": "Retain" },
        });
        volumes
            .patch(&volume, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|source| {
                Error::kube(format!("retaining PersistentVolume {volume}"), source)
            })?;
        kept.push(volume);
    }
    Ok(kept)
}

/// Asks for the cell's namespace (and so everything in it) to be deleted; `true` once it is
/// gone.
pub async fn delete_namespace(client: &Client, cell: &Cell) -> Result<bool, Error> {
    let ns = namespace(cell);
    let api = api(client, "Namespace", "")?;
    let present = api
        .get_opt(&ns)
        .await
        .map_err(|source| Error::kube(format!("reading Namespace {ns}"), source))?;
    let Some(present) = present else {
        return Ok(true);
    };
    if present.metadata.deletion_timestamp.is_none() {
        match api.delete(&ns, &DeleteParams::background()).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.is_not_found() => return Ok(true),
            Err(source) => return Err(Error::kube(format!("deleting Namespace {ns}"), source)),
        }
    }
    Ok(false)
}

/// Reads one object of the cell as JSON (`None` when absent).
pub async fn get(
    client: &Client,
    cell: &Cell,
    kind: &str,
    name: &str,
) -> Result<Option<Value>, Error> {
    let ns = namespace(cell);
    let object = api(client, kind, &ns)?
        .get_opt(name)
        .await
        .map_err(|source| Error::kube(format!("reading {kind} {ns}/{name}"), source))?;
    object
        .map(|o| serde_json::to_value(o).map_err(|e| Error::Render(e.to_string())))
        .transpose()
}

/// The ordinals of `service`'s ready pods (a StatefulSet's `<service>-service-<n>`), in order.
pub async fn ready_ordinals(
    client: &Client,
    cell: &Cell,
    service: &str,
) -> Result<Vec<u32>, Error> {
    let ns = namespace(cell);
    let selector = format!(
        "{}={service},{CELL_LABEL}={}",
        SERVICE_LABEL, cell.spec.cell_id
    );
    // Read only (not a managed kind): the chart grants `list` on pods and nothing else.
    let gvk = GroupVersionKind::gvk("", "v1", "Pod");
    let ar = ApiResource::from_gvk_with_plural(&gvk, "pods");
    let pods = Api::<DynamicObject>::namespaced_with(client.clone(), &ns, &ar)
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|source| Error::kube(format!("listing the pods of {service} in {ns}"), source))?;
    let prefix = format!("{service}-service-");
    let mut ordinals: Vec<u32> = pods
        .items
        .iter()
        .filter(|pod| {
            let conditions = &pod.data["status"]["conditions"];
            let ready = conditions.as_array().is_some_and(|all| {
                all.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            });
            ready && pod.metadata.deletion_timestamp.is_none()
        })
        .filter_map(|pod| {
            pod.metadata
                .name
                .as_deref()?
                .strip_prefix(&prefix)?
                .parse()
                .ok()
        })
        .collect();
    ordinals.sort_unstable();
    Ok(ordinals)
}

/// Deletes `kind/name` from the cell's namespace if it is there; whether it was.
pub async fn remove(client: &Client, cell: &Cell, kind: &str, name: &str) -> Result<bool, Error> {
    let ns = namespace(cell);
    match api(client, kind, &ns)?
        .delete(name, &DeleteParams::background())
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(status)) if status.is_not_found() => Ok(false),
        Err(source) => Err(Error::kube(format!("deleting {kind} {ns}/{name}"), source)),
    }
}

/// The value under `key` in the cell's Secret `name`: `data` (base64, as the API serves it) or
/// `stringData` (as written, before an API server folds it into `data`).
pub async fn secret_value(
    client: &Client,
    cell: &Cell,
    name: &str,
    key: &str,
) -> Result<Option<String>, Error> {
    use base64::Engine as _;
    let Some(secret) = get(client, cell, "Secret", name).await? else {
        return Ok(None);
    };
    if let Some(encoded) = secret["data"][key].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .map_err(|e| Error::Render(format!("Secret {name}/{key} is not base64: {e}")))?;
        return String::from_utf8(bytes)
            .map(Some)
            .map_err(|e| Error::Render(format!("Secret {name}/{key} is not UTF-8: {e}")));
    }
    Ok(secret["stringData"][key].as_str().map(str::to_owned))
}
