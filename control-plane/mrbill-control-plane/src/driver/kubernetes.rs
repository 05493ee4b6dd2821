//! The kubernetes driver: a tenant's cell is a cluster-scoped `Cell` resource named by its cell
//! id; the operator (`operator/`) turns it into the cell and reports back in its status, which
//! this driver maps into the catalog and the route.
//!
//! Every step is idempotent: `cell` is a server-side apply under the control plane's field
//! manager (the operator writes only `/status`), `ready` and `gone` only read.

use cell_model::contract::Service;
use cell_model::route_feed::{Endpoints, ServiceUrls};
use cell_model::{Cell, CellSpec, CellStatus, ConditionStatus, Phase};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource};
use serde_json::json;

use super::{BoxFuture, CellDriver, Observation, Step, Work};
use crate::catalog::Op;

/// Field manager of the control plane's writes to `Cell` resources.
pub const FIELD_MANAGER: &str = "mrbill-control-plane";

/// Talks to the Kubernetes API for the control plane.
#[derive(Clone)]
pub struct KubeDriver {
    cells: Api<Cell>,
}

impl std::fmt::Debug for KubeDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeDriver").finish_non_exhaustive()
    }
}

impl KubeDriver {
    pub fn new(client: Client) -> Self {
        Self {
            cells: Api::all(client),
        }
    }

    /// In a pod: its service account; elsewhere: the current kubeconfig context.
    pub async fn from_environment() -> anyhow::Result<Self> {
        // kube's TLS uses ring, chosen explicitly: with another rustls provider compiled in
        // (feature unification) rustls cannot pick one by itself.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(Self::new(Client::try_default().await?))
    }

    /// Creates or updates the cell's `Cell` to `spec` (with `suspended` as given).
    pub async fn apply(&self, spec: &CellSpec, suspended: bool) -> anyhow::Result<()> {
        let mut spec = spec.clone();
        spec.suspended = suspended;
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
        self.cells
            .patch(
                &spec.cell_id,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&body),
            )
            .await
            .map_err(|e| anyhow::anyhow!("applying Cell {}: {e}", spec.cell_id))?;
        Ok(())
    }

    /// The cell's `Cell`, if it exists.
    pub async fn get(&self, cell_id: &str) -> anyhow::Result<Option<Cell>> {
        self.cells
            .get_opt(cell_id)
            .await
            .map_err(|e| anyhow::anyhow!("reading Cell {cell_id}: {e}"))
    }

    /// The status once the operator reports the current generation ready (else an error that
    /// says what it waits for; the reconciler retries with backoff).
    pub async fn ready(&self, cell_id: &str) -> anyhow::Result<CellStatus> {
        let cell = self
            .get(cell_id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("Cell {cell_id} does not exist"))?;
        let status = cell.status.clone().unwrap_or_default();
        let current = status.observed_generation >= cell.metadata.generation;
        match status.condition("Ready") {
            Some(c) if c.status == ConditionStatus::True && current => Ok(status),
            Some(c) => anyhow::bail!(
                "waiting for Cell {cell_id}: {} ({}{})",
                c.reason,
                c.message,
                if current {
                    ""
                } else {
                    "; spec not yet observed"
                }
            ),
            None => anyhow::bail!("waiting for the operator to pick up Cell {cell_id}"),
        }
    }

    /// Asks for the `Cell` to be deleted (the operator's finalizer removes the namespace first).
    pub async fn delete(&self, cell_id: &str) -> anyhow::Result<()> {
        match self
            .cells
            .delete(cell_id, &DeleteParams::background())
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_not_found() => Ok(()),
            Err(e) => anyhow::bail!("deleting Cell {cell_id}: {e}"),
        }
    }

    /// Succeeds once the `Cell` is gone.
    pub async fn gone(&self, cell_id: &str) -> anyhow::Result<()> {
        match self.get(cell_id).await? {
            None => Ok(()),
            Some(cell) => {
                let phase = cell.status.map(|s| s.phase).unwrap_or_default();
                anyhow::bail!("waiting for Cell {cell_id} to be deleted (phase {phase:?})")
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
            // Ordered by `migrate.rs` for every driver; the driver's part is `migrate`.
            // The operator sets each autoscaler's bounds from the spec's replicas.
            Op::Scale => &[Step::Cell, Step::Ready, Step::Route],
            Op::Migrate | Op::Abort => &[],
        }
    }

    fn run<'a>(&'a self, work: Work<'a>, op: Op, step: Step) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let id = work.spec.cell_id.as_str();
            match (op, step) {
                (Op::Provision | Op::Resume | Op::Scale, Step::Cell) => {
                    self.apply(work.spec, false).await
                }
                (Op::Suspend, Step::Cell) => self.apply(work.spec, true).await,
                (Op::Provision | Op::Resume | Op::Scale, Step::Ready) => {
                    self.ready(id).await.map(drop)
                }
                (Op::Delete, Step::Cell) => self.delete(id).await,
                (Op::Delete, Step::Gone) => self.gone(id).await,
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
        Box::pin(async move { Ok(route_urls(&self.ready(&work.spec.cell_id).await?).into()) })
    }

    /// The operator's conditions and endpoints, as it reports them.
    fn settle<'a>(
        &'a self,
        work: Work<'a>,
        _serving: bool,
    ) -> BoxFuture<'a, anyhow::Result<Observation>> {
        Box::pin(async move {
            Ok(
                match self.get(&work.spec.cell_id).await?.and_then(|c| c.status) {
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
            let Some(resource) = self.get(&spec.cell_id).await? else {
                tracing::warn!(cell = %spec.cell_id, "the Cell resource is missing; applying it again");
                self.apply(spec, spec.suspended).await?;
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
                serving: (reported.phase == Phase::Ready).then(|| route_urls(&reported).into()),
                phase: settled.then_some(reported.phase),
                services: Some(reported.endpoints.services),
                conditions: reported.conditions,
            }))
        })
    }

    /// Kubernetes cells are not dumped before deletion (yet): their volume is kept.
    fn backup_destination(&self, _tenant: &str, _cell_id: &str) -> Option<std::path::PathBuf> {
        None
    }

    fn details(&self, _placement: &str, _cell_id: &str) -> Option<serde_json::Value> {
        None
    }
}

/// The route's service URLs from a Cell's status (cluster DNS names the operator reports).
fn route_urls(status: &CellStatus) -> ServiceUrls {
    status
        .endpoints
        .services
        .iter()
        .filter_map(|(name, url)| Some((Service::parse(name)?, url.clone())))
        .collect()
}
