//! The kubernetes driver: a tenant's cell is a cluster-scoped `Cell` resource named by its cell
//! id; the operator (`operator/`) turns it into the cell and reports back in its status, which
//! this driver maps into the catalog and the route. A placement is a cluster: the driver keeps
//! a client per placement (`MRBILL_KUBE_CONTEXTS`: `placement=kubeconfig-context,…`, contexts of
//! `MRBILL_KUBECONFIG` or the usual kubeconfig; any other placement is the cluster of the
//! default client), and moves cells between them (`migrate`).
//!
//! Every step is idempotent: `cell` is a server-side apply under the control plane's field
//! manager (the operator writes only `/status`), `ready` and `gone` only read.

use std::collections::BTreeMap;

use cell_model::contract::Service;
use cell_model::route_feed::{Endpoints, ServiceUrls};
use cell_model::{Cell, CellMigration, CellSpec, CellStatus, ConditionStatus, Phase};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource};
use serde_json::json;

use super::{BoxFuture, CellDriver, Observation, Step, Work, waiting};
use crate::catalog::Op;

mod migrate;
mod restore;

pub use restore::backup_name;

/// Field manager of the control plane's writes to `Cell` resources.
pub const FIELD_MANAGER: &str = "mrbill-control-plane";

/// How a target cluster reaches a source cell's Postgres, by default: the source's primary
/// Service exported across the placements' clusters (Kubernetes Multi-Cluster Services).
pub const DEFAULT_SOURCE_HOST: &str = "postgres-rw.{namespace}.svc.clusterset.local";

/// One cluster the control plane talks to.
#[derive(Clone)]
struct Cluster {
    client: Client,
    cells: Api<Cell>,
}

impl Cluster {
    fn new(client: Client) -> Self {
        Self {
            cells: Api::all(client.clone()),
            client,
        }
    }
}

/// Talks to the Kubernetes API of every placement for the control plane.
#[derive(Clone)]
pub struct KubeDriver {
    default: Cluster,
    placements: BTreeMap<String, Cluster>,
    /// [`DEFAULT_SOURCE_HOST`] or `MRBILL_KUBE_SOURCE_HOST`: `{namespace}`, `{placement}`.
    source_host: String,
}

impl std::fmt::Debug for KubeDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeDriver")
            .field("placements", &self.placements.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl KubeDriver {
    /// Every placement in the cluster of `client`.
    pub fn new(client: Client) -> Self {
        Self::with_placements(client, BTreeMap::new())
    }

    /// Placements in clusters of their own; the rest in `default`'s.
    pub fn with_placements(default: Client, placements: BTreeMap<String, Client>) -> Self {
        Self {
            default: Cluster::new(default),
            placements: placements
                .into_iter()
                .map(|(p, c)| (p, Cluster::new(c)))
                .collect(),
            source_host: DEFAULT_SOURCE_HOST.to_owned(),
        }
    }

    /// How a target reaches a source's Postgres (`{namespace}`, `{placement}` replaced).
    pub fn source_host(mut self, template: &str) -> Self {
        template.clone_into(&mut self.source_host);
        self
    }

    /// In a pod: its service account; elsewhere: the current kubeconfig context. Placements
    /// named in `MRBILL_KUBE_CONTEXTS` get a client of their context's.
    pub async fn from_environment() -> anyhow::Result<Self> {
        // kube's TLS uses ring, chosen explicitly: with another rustls provider compiled in
        // (feature unification) rustls cannot pick one by itself.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut placements = BTreeMap::new();
        let contexts: Option<String> = service_kit::config::optional("MRBILL_KUBE_CONTEXTS")?;
        // The other clusters' contexts: a kubeconfig of their own (the default client stays
        // this pod's service account), or the usual kubeconfig.
        let file: Option<std::path::PathBuf> = service_kit::config::optional("MRBILL_KUBECONFIG")?;
        let kubeconfig = match &file {
            Some(path) => Some(
                kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            ),
            None => None,
        };
        for pair in contexts
            .iter()
            .flat_map(|c| c.split(','))
            .filter(|p| !p.is_empty())
        {
            let (placement, context) = pair.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("MRBILL_KUBE_CONTEXTS: `{pair}` is not placement=context")
            })?;
            let options = kube::config::KubeConfigOptions {
                context: Some(context.to_owned()),
                ..Default::default()
            };
            let config = match &kubeconfig {
                Some(k) => kube::Config::from_custom_kubeconfig(k.clone(), &options).await,
                None => kube::Config::from_kubeconfig(&options).await,
            }
            .map_err(|e| anyhow::anyhow!("kubeconfig context {context}: {e}"))?;
            placements.insert(placement.to_owned(), Client::try_from(config)?);
        }
        let driver = Self::with_placements(Client::try_default().await?, placements);
        Ok(
            match service_kit::config::optional::<String>("MRBILL_KUBE_SOURCE_HOST")? {
                Some(template) => driver.source_host(&template),
                None => driver,
            },
        )
    }

    fn cluster(&self, placement: &str) -> &Cluster {
        self.placements.get(placement).unwrap_or(&self.default)
    }

    /// Creates or updates the cell's `Cell` in `placement` to `spec` (with `suspended` and
    /// `migration` as given).
    pub async fn apply(
        &self,
        placement: &str,
        spec: &CellSpec,
        suspended: bool,
        migration: Option<CellMigration>,
    ) -> anyhow::Result<()> {
        let mut spec = spec.clone();
        spec.suspended = suspended;
        spec.migration = migration;
        placement.clone_into(&mut spec.placement);
        let body = json!({
            "apiVersion": Cell::api_version(&()),
            "kind": Cell::kind(&()),
            "metadata": {
                "name": spec.cell_id,
                "labels": {
                    "mrbill.dev/tenant": spec.tenant,
                    "app.kubernetes.io/managed-by": FIELD_MANAGER,
                },
            },
            "spec": spec,
        });
        self.cluster(placement)
            .cells
            .patch(
                &spec.cell_id,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(|e| anyhow::anyhow!("applying Cell {} in {placement}: {e}", spec.cell_id))?;
        Ok(())
    }

    /// The cell's `Cell` in `placement`, if it exists.
    pub async fn get(&self, placement: &str, cell_id: &str) -> anyhow::Result<Option<Cell>> {
        self.cluster(placement)
            .cells
            .get_opt(cell_id)
            .await
            .map_err(|e| anyhow::anyhow!("reading Cell {cell_id} in {placement}: {e}"))
    }

    /// The status once the operator reports `type_` true for the current generation (else an
    /// error that says what it waits for; the reconciler retries with backoff).
    pub async fn condition(
        &self,
        placement: &str,
        cell_id: &str,
        type_: &str,
    ) -> anyhow::Result<CellStatus> {
        let cell = self
            .get(placement, cell_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("Cell {cell_id} does not exist in {placement}"))?;
        let status = cell.status.clone().unwrap_or_default();
        let current = status.observed_generation >= cell.metadata.generation;
        match status.condition(type_) {
            Some(c) if c.status == ConditionStatus::True && current => Ok(status),
            Some(c) => Err(waiting(format!(
                "waiting for {type_} of Cell {cell_id} in {placement}: {} ({}{})",
                c.reason,
                c.message,
                if current {
                    ""
                } else {
                    "; spec not yet observed"
                }
            ))),
            None => Err(waiting(format!(
                "waiting for the operator in {placement} to report {type_} of Cell {cell_id}"
            ))),
        }
    }

    /// The status once the operator reports the current generation ready.
    pub async fn ready(&self, placement: &str, cell_id: &str) -> anyhow::Result<CellStatus> {
        self.condition(placement, cell_id, "Ready").await
    }

    /// Asks for the `Cell` to be deleted (the operator's finalizer removes the namespace first).
    pub async fn delete(&self, placement: &str, cell_id: &str) -> anyhow::Result<()> {
        match self
            .cluster(placement)
            .cells
            .delete(cell_id, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
            Err(e) => anyhow::bail!("deleting Cell {cell_id} in {placement}: {e}"),
        }
    }

    /// Names the last base backup the operator takes before deleting Cell `cell_id` (a Cell
    /// already gone needs none).
    async fn name_final_backup(
        &self,
        placement: &str,
        cell_id: &str,
        name: &str,
    ) -> anyhow::Result<()> {
        let patch = serde_json::json!({
            "metadata": { "annotations": { cell_model::FINAL_BACKUP_ANNOTATION: name } }
        });
        match self
            .cluster(placement)
            .cells
            .patch(cell_id, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
            Err(e) => anyhow::bail!("naming Cell {cell_id}'s last backup in {placement}: {e}"),
        }
    }

    /// Succeeds once the `Cell` is gone from `placement`.
    pub async fn gone(&self, placement: &str, cell_id: &str) -> anyhow::Result<()> {
        match self.get(placement, cell_id).await? {
            None => Ok(()),
            Some(cell) => {
                let phase = cell.status.map(|s| s.phase).unwrap_or_default();
                Err(waiting(format!(
                    "waiting for Cell {cell_id} to be deleted from {placement} (phase {phase:?})"
                )))
            }
        }
    }
}

impl CellDriver for KubeDriver {
    /// ```text
    /// provision: cell (apply spec) → ready (status Ready for this generation) → route   ⇒ Ready
    /// suspend:   route (suspended) → cell (spec.suspended = true)                      ⇒ Suspended
    /// resume:    cell (spec.suspended = false) → ready → route (active)                ⇒ Ready
    /// delete:    route (removed) → cell (delete) → gone (finalizer done) → catalog     ⇒ gone
    /// ```
    fn steps(&self, op: Op) -> &'static [Step] {
        match op {
            Op::Provision | Op::Resume => &[Step::Cell, Step::Ready, Step::Route],
            Op::Suspend => &[Step::Route, Step::Cell],
            Op::Delete => &[Step::Route, Step::Cell, Step::Gone, Step::Catalog],
            // Ordered by `migrate.rs` for every driver; the driver's part is `migrate`
            // (`kubernetes/migrate.rs`).
            // The operator sets each autoscaler's bounds from the spec's replicas.
            Op::Scale => &[Step::Cell, Step::Ready, Step::Route],
            Op::Migrate | Op::Abort | Op::Restore | Op::Unrestore => &[],
        }
    }

    fn run<'a>(&'a self, work: Work<'a>, op: Op, step: Step) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let id = work.spec.cell_id.as_str();
            let at = work.placement;
            match (op, step) {
                (Op::Provision | Op::Resume | Op::Scale, Step::Cell) => {
                    self.apply(at, work.spec, false, None).await
                }
                (Op::Suspend, Step::Cell) => self.apply(at, work.spec, true, None).await,
                (Op::Provision | Op::Resume | Op::Scale, Step::Ready) => {
                    self.ready(at, id).await.map(drop)
                }
                (Op::Delete, Step::Cell) => {
                    if let Some(name) = work.backup.and_then(|b| b.to_str()) {
                        self.name_final_backup(at, id, name).await?;
                    }
                    self.delete(at, id).await
                }
                (Op::Delete, Step::Gone) => self.gone(at, id).await,
                _ => anyhow::bail!(
                    "the kubernetes driver has no step {} in {}",
                    step.as_str(),
                    op.as_str()
                ),
            }
        })
    }

    /// A Kubernetes Service balances over a service's pods: one URL each.
    fn service_urls<'a>(&'a self, work: Work<'a>) -> BoxFuture<'a, anyhow::Result<Endpoints>> {
        Box::pin(async move {
            let status = self.ready(work.placement, &work.spec.cell_id).await?;
            Ok(route_urls(&status))
        })
    }

    /// The operator's conditions and endpoints, as it reports them.
    fn settle<'a>(
        &'a self,
        work: Work<'a>,
        _serving: bool,
    ) -> BoxFuture<'a, anyhow::Result<Observation>> {
        Box::pin(async move {
            Ok(
                match self
                    .get(work.placement, &work.spec.cell_id)
                    .await?
                    .and_then(|c| c.status)
                {
                    Some(reported) => Observation {
                        conditions: reported.conditions,
                        services: Some(reported.endpoints.services),
                        phase: None,
                        serving: None,
                    },
                    None => Observation::default(),
                },
            )
        })
    }

    /// The catalog follows what the operator reports; a `Cell` deleted behind the control
    /// plane's back is applied again (the catalog is the source of truth).
    fn watch<'a>(
        &'a self,
        work: Work<'a>,
        _phase: Phase,
    ) -> BoxFuture<'a, anyhow::Result<Option<Observation>>> {
        Box::pin(async move {
            let spec = work.spec;
            let Some(resource) = self.get(work.placement, &spec.cell_id).await? else {
                tracing::warn!(cell = %spec.cell_id, "the Cell resource is missing; applying it again");
                self.apply(work.placement, spec, spec.suspended, None)
                    .await?;
                return Ok(None);
            };
            let Some(reported) = resource.status else {
                return Ok(None);
            };
            let settled = matches!(
                reported.phase,
                Phase::Ready | Phase::Degraded | Phase::Suspended
            );
            Ok(Some(Observation {
                serving: (reported.phase == Phase::Ready).then(|| route_urls(&reported)),
                phase: settled.then_some(reported.phase),
                services: Some(reported.endpoints.services),
                conditions: reported.conditions,
            }))
        })
    }

    fn migrates(&self) -> bool {
        true
    }

    fn migrate<'a>(&'a self, mv: super::Move<'a>, step: Step) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.migrate_step(mv, step))
    }

    fn backs_up(&self) -> bool {
        true
    }

    fn back_up<'a>(
        &'a self,
        work: Work<'a>,
        id: uuid::Uuid,
    ) -> BoxFuture<'a, anyhow::Result<crate::driver::Taken>> {
        Box::pin(self.take_backup(work, id))
    }

    fn forget_backup<'a>(
        &'a self,
        tenant: &'a str,
        placement: &'a str,
        location: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.delete_backup(tenant, placement, location))
    }

    /// CloudNativePG replays the cell's WAL archive, RDS its instance's transaction logs, to
    /// any time within the retention.
    fn point_in_time(&self) -> bool {
        true
    }

    fn restore<'a>(
        &'a self,
        r: crate::driver::Restoring<'a>,
        step: Step,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.restore_step(r, step))
    }

    /// Undone by the operator, which decides atomically whether the database was replaced
    /// yet (`restore.rs`).
    fn unrestores(&self) -> bool {
        true
    }

    fn unrestore<'a>(
        &'a self,
        r: crate::driver::Restoring<'a>,
        step: Step,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.unrestore_step(r, step))
    }

    fn undone_restore<'a>(
        &'a self,
        r: crate::driver::Restoring<'a>,
    ) -> BoxFuture<'a, anyhow::Result<Option<cell_model::CellRestore>>> {
        Box::pin(async move {
            let (at, id) = (r.placement, r.spec.cell_id.as_str());
            let cell = self
                .get(at, id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("Cell {id} does not exist in {at}"))?;
            Ok(cell.spec.restore)
        })
    }

    /// Kubernetes cells are not dumped before deletion: the operator takes a last base backup
    /// into the cell's archive, and keeps its volumes.
    /// The deletion's last base backup, named here so the catalog records it: the operator's
    /// finalizer takes it under this name (annotated on the Cell before it is deleted) and
    /// keeps where it is in the deleted cell's record.
    fn backup_destination(&self, _tenant: &str, _cell_id: &str) -> Option<std::path::PathBuf> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        Some(std::path::PathBuf::from(format!("final-{now}")))
    }

    /// The operator's record of the deleted cell brings it back: an in-cluster cell from any
    /// base backup in its kept archive; an rds cell from its final snapshot only (a restore
    /// point is in RDS's logs of the instance, which went with it).
    fn restores_deleted(&self, spec: &cell_model::CellSpec, location: &str) -> bool {
        match spec.database.engine {
            cell_model::DatabaseEngine::Rds => cell_model::restore_point_of(location).is_none(),
            _ => true,
        }
    }

    fn details(&self, _placement: &str, _cell_id: &str) -> Option<serde_json::Value> {
        None
    }
}

/// The route's endpoints from a Cell's status (cluster DNS names the operator reports): one
/// URL per service, and each pod of the services pinned per pod (dojo).
fn route_urls(status: &CellStatus) -> Endpoints {
    Endpoints {
        services: status
            .endpoints
            .services
            .iter()
            .filter_map(|(name, url)| Some((Service::parse(name)?, url.clone())))
            .collect::<ServiceUrls>(),
        replicas: status.endpoints.replicas.clone().into(),
    }
}
