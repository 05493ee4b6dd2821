//! The local driver behind the reconciler's seam: its steps per operation, and what it
//! observes of a cell (the supervisor's `state.json`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use cell_model::Phase;
use cell_model::contract::Service;
use cell_model::route_feed::Endpoints;

use super::files::SupervisorState;
use super::{LocalDriver, service_urls};
use crate::catalog::Op;
use crate::driver::{
    BoxFuture, CellDriver, Move, Observation, Restoring, Step, Taken, Work, condition,
};

const PROVISION: &[Step] = &[
    Step::Secrets,
    Step::Cluster,
    Step::Supervisor,
    Step::Databases,
    Step::Services,
    Step::Route,
];

impl CellDriver for LocalDriver {
    /// ```text
    /// provision: secrets → cluster → supervisor → databases → services → route   ⇒ Ready
    /// suspend:   route (suspended) → services (stopped)                          ⇒ Suspended
    /// scale:     services (new instances ready) → route (the wanted ones) → prune ⇒ Ready
    /// resume:    services (running) → route (active)                             ⇒ Ready
    /// delete:    route (removed) → backup → stop → files → catalog               ⇒ gone
    /// ```
    fn steps(&self, op: Op) -> &'static [Step] {
        match op {
            Op::Provision => PROVISION,
            Op::Suspend => &[Step::Route, Step::Services],
            // Sizes recorded while suspended apply: instances beyond them go first (nothing is
            // routed to a suspended cell), the missing ones start with the rest.
            Op::Resume => &[Step::Prune, Step::Services, Step::Route],
            Op::Delete => &[
                Step::Route,
                Step::Backup,
                Step::Stop,
                Step::Files,
                Step::Catalog,
            ],
            // Ordered by `migrate.rs` for every driver; the driver's part is `migrate`.
            Op::Scale => &[Step::Services, Step::Route, Step::Prune],
            Op::Migrate | Op::Abort | Op::Restore | Op::Unrestore => &[],
        }
    }

    fn run<'a>(&'a self, work: Work<'a>, op: Op, step: Step) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let dir = &self.cell_dir(work.placement, &work.spec.cell_id);
            match (op, step) {
                (Op::Provision, Step::Secrets) => self.prepare(work.spec, dir).await,
                (Op::Provision, Step::Cluster) => self.init_cluster(dir).await,
                (Op::Provision, Step::Supervisor) => self.ensure_supervisor(dir).await,
                (Op::Provision, Step::Databases) => self.ensure_databases(dir).await,
                (Op::Provision, Step::Services) => self.set_services(dir, true).await.map(drop),
                (Op::Suspend, Step::Services) => self.set_services(dir, false).await.map(drop),
                (Op::Scale | Op::Resume, Step::Services) => self.scale_up(work.spec, dir).await,
                (Op::Scale | Op::Resume, Step::Prune) => self.prune(work.spec, dir).await,
                (Op::Delete, Step::Backup) => {
                    let dest = work.backup.context("the tenant has no backup path")?;
                    self.backup(dir, &work.spec.tenant, dest, true)
                        .await
                        .map(drop)
                }
                (Op::Delete, Step::Stop) => self.stop(dir).await,
                (Op::Delete, Step::Files) => self.remove(dir).await,
                _ => bail!(
                    "the local driver has no step {} in {}",
                    step.as_str(),
                    op.as_str()
                ),
            }
        })
    }

    fn service_urls<'a>(&'a self, work: Work<'a>) -> BoxFuture<'a, anyhow::Result<Endpoints>> {
        Box::pin(async move {
            let urls = self
                .observe(&self.cell_dir(work.placement, &work.spec.cell_id))
                .map(|s| service_urls(&wanted_only(s, work.spec)))
                .context("the cell's supervisor is not running")?;
            anyhow::ensure!(
                urls.get(Service::Poc).is_some(),
                "poc-service is not running"
            );
            Ok(urls)
        })
    }

    fn settle<'a>(
        &'a self,
        work: Work<'a>,
        serving: bool,
    ) -> BoxFuture<'a, anyhow::Result<Observation>> {
        Box::pin(async move {
            let (services, ready) = if serving {
                ("Running", "Serving")
            } else {
                ("Suspended", "Suspended")
            };
            Ok(Observation {
                conditions: vec![
                    condition("DatabaseReady", true, "PostgresRunning"),
                    condition("ServicesReady", serving, services),
                    condition("Ready", serving, ready),
                ],
                services: self
                    .observe(&self.cell_dir(work.placement, &work.spec.cell_id))
                    .map(|s| endpoints(&s)),
                phase: None,
                serving: None,
            })
        })
    }

    /// A dead supervisor is replaced (it adopts the cell's data and processes as they are); a
    /// serving cell gains the services it lacks, and moved ports reach the route.
    fn watch<'a>(
        &'a self,
        work: Work<'a>,
        phase: Phase,
    ) -> BoxFuture<'a, anyhow::Result<Option<Observation>>> {
        Box::pin(async move {
            let dir = self.cell_dir(work.placement, &work.spec.cell_id);
            let Some(state) = self.observe(&dir) else {
                tracing::warn!(cell = %work.spec.cell_id, "cell supervisor is gone; starting a new one");
                self.spawn_supervisor_if_gone(&dir)?;
                return Ok(None);
            };
            if phase == Phase::Suspended {
                return Ok(None);
            }
            self.add_missing_services(work.spec, &dir).await?;
            let urls = service_urls(&state);
            let serving = urls.get(Service::Poc).is_some();
            let (services, ready) = if serving {
                ("Running", "Serving")
            } else {
                ("Restarting", "Restarting")
            };
            Ok(Some(Observation {
                conditions: vec![
                    condition("ServicesReady", serving, services),
                    condition("Ready", serving, ready),
                ],
                services: Some(endpoints(&state)),
                phase: Some(if serving {
                    Phase::Ready
                } else {
                    Phase::Degraded
                }),
                serving: serving.then_some(urls),
            }))
        })
    }

    fn migrates(&self) -> bool {
        true
    }

    fn migrate<'a>(&'a self, mv: Move<'a>, step: Step) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.migrate_step(mv, step))
    }

    fn backup_destination(&self, tenant: &str, cell_id: &str) -> Option<PathBuf> {
        let stamp = time::OffsetDateTime::now_utc().unix_timestamp();
        Some(
            self.home
                .backups_dir()
                .join(format!("{tenant}-{cell_id}-{stamp}")),
        )
    }

    fn backs_up(&self) -> bool {
        true
    }

    /// Its backups are directories under `MRBILL_HOME/backups`, the delete's own among them.
    fn restores_deleted(&self, _spec: &cell_model::CellSpec, _location: &str) -> bool {
        true
    }

    /// Into `<backups>/<tenant>-<cell>-<time>-<id's last 12>`; a failed one leaves nothing.
    fn back_up<'a>(
        &'a self,
        work: Work<'a>,
        id: uuid::Uuid,
    ) -> BoxFuture<'a, anyhow::Result<Taken>> {
        Box::pin(async move {
            let (tenant, cell_id) = (&work.spec.tenant, &work.spec.cell_id);
            let id = id.simple().to_string();
            let dest = self.home.backups_dir().join(format!(
                "{tenant}-{cell_id}-{}-{}",
                time::OffsetDateTime::now_utc().unix_timestamp(),
                &id[id.len() - 12..]
            ));
            let dir = self.cell_dir(work.placement, cell_id);
            let taken = self.backup(&dir, tenant, &dest, false).await;
            if taken.is_err() {
                let _ = tokio::fs::remove_dir_all(&dest).await;
            }
            taken
        })
    }

    fn restore<'a>(&'a self, r: Restoring<'a>, step: Step) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.restore_step(r, step))
    }

    /// The copy fence set aside is kept until the next restore or the delete.
    fn unrestores(&self) -> bool {
        true
    }

    fn unrestore<'a>(&'a self, r: Restoring<'a>, step: Step) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(self.unrestore_step(r, step))
    }

    fn details(&self, placement: &str, cell_id: &str) -> Option<serde_json::Value> {
        self.observe(&self.cell_dir(placement, cell_id))
            .and_then(|s| serde_json::to_value(s).ok())
    }
}

/// The supervisor's state without the instances beyond the spec's replicas (a scale down
/// takes them out of the route before it stops them).
fn wanted_only(mut state: SupervisorState, spec: &cell_model::CellSpec) -> SupervisorState {
    state.services.retain(|key, _| {
        let (name, replica) = match key.split_once('-') {
            Some((name, n)) => (name, n.parse().unwrap_or(u32::MAX)),
            None => (key.as_str(), 1),
        };
        Service::parse(name).is_none_or(|service| replica <= super::wanted(spec, service))
    });
    state
}

/// Where each running service answers, for `cell show`.
fn endpoints(state: &SupervisorState) -> BTreeMap<String, String> {
    state
        .services
        .iter()
        .filter_map(|(name, s)| Some((name.clone(), format!("http://{}", s.public.as_ref()?))))
        .collect()
}
