//! The kubernetes driver's part of a migration (`migrate.rs` orders the steps): the same cell
//! as a `Cell` in the target placement's cluster with the source's identity, fed by
//! CloudNativePG logical replication, each step a change to one of the two `Cell`s' spec
//! (`spec.migration`) and a wait for the condition its operator reports
//! (`cell_model::move_conditions`; what the operator does is in `operator/src/render/
//! migration.rs`).
//!
//! ```text
//! target    B: Cell (target, provision) · identity Secrets copied A → B · DatabaseReady
//! copy      A: Cell (source) → Published · migrator-role copied A → B as migration-source
//!           B: Cell (target, copy, source host) → Replicating
//! catch-up  B: CaughtUp
//! fence     A: Cell (source, fenced) → Fenced (no pods)
//! sync      B: (target, sync) → InSync (rows equal, sequences copied)
//! verify    B: (target, verify) → Verified
//! start     B: Cell without migration (subscriptions dropped, services run) → Ready
//! unfence   A: Cell without migration (services back, publications dropped) → Ready
//! discard   B: Cell deleted → gone
//! ```
//!
//! The control plane copies Secrets by name only, never generates or reads other ones.

use cell_model::move_conditions::{CAUGHT_UP, FENCED, IN_SYNC, PUBLISHED, REPLICATING, VERIFIED};
use cell_model::{CellMigration, MigrationPhase, MigrationRole, identity};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::Value;

use super::KubeDriver;
use crate::driver::{Move, Step};

/// The source's replication credentials and CA, and their name on the target.
const MIGRATOR: (&str, &str) = (identity::MIGRATOR, identity::MIGRATION_SOURCE);

impl KubeDriver {
    pub(super) async fn migrate_step(&self, mv: Move<'_>, step: Step) -> anyhow::Result<()> {
        let (a, b, id) = (mv.source, mv.target, mv.spec.cell_id.as_str());
        let namespace = format!("cell-{}", mv.spec.tenant);
        let migration = |role, fenced, phase| CellMigration {
            role,
            id: format!("{id}:{a}->{b}"),
            fenced,
            source_host: (role == MigrationRole::Target).then(|| {
                self.source_host
                    .replace("{namespace}", &namespace)
                    .replace("{placement}", a)
            }),
            phase,
        };
        let target = |phase| migration(MigrationRole::Target, false, Some(phase));
        match step {
            Step::Target => {
                // An rds cell's databases are its own instance's: their move is not built yet.
                anyhow::ensure!(
                    mv.spec.database.engine == cell_model::DatabaseEngine::InCluster,
                    "only in-cluster (CloudNativePG) cells move between clusters yet; abort this migration"
                );
                let m = target(MigrationPhase::Provision);
                self.apply(b, mv.spec, false, Some(m)).await?;
                // The cell's identity (what the operator would otherwise generate).
                for name in identity::names(mv.spec.database.engine) {
                    self.copy_secret(&namespace, (a, &name), (b, &name)).await?;
                }
                self.condition(b, id, "DatabaseReady").await.map(drop)
            }
            Step::Copy => {
                let source = migration(MigrationRole::Source, false, None);
                self.apply(a, mv.spec, false, Some(source)).await?;
                self.condition(a, id, PUBLISHED).await?;
                let (from, to) = MIGRATOR;
                self.copy_secret(&namespace, (a, from), (b, to)).await?;
                self.apply(b, mv.spec, false, Some(target(MigrationPhase::Copy)))
                    .await?;
                self.condition(b, id, REPLICATING).await.map(drop)
            }
            Step::CatchUp => self.condition(b, id, CAUGHT_UP).await.map(drop),
            Step::Fence => {
                let fenced = migration(MigrationRole::Source, true, None);
                self.apply(a, mv.spec, false, Some(fenced)).await?;
                self.condition(a, id, FENCED).await.map(drop)
            }
            Step::Sync => {
                self.apply(b, mv.spec, false, Some(target(MigrationPhase::Sync)))
                    .await?;
                self.condition(b, id, IN_SYNC).await.map(drop)
            }
            Step::Verify => {
                self.apply(b, mv.spec, false, Some(target(MigrationPhase::Verify)))
                    .await?;
                self.condition(b, id, VERIFIED).await.map(drop)
            }
            Step::Start => {
                self.apply(b, mv.spec, false, None).await?;
                self.ready(b, id).await.map(drop)
            }
            Step::Unfence => {
                self.apply(a, mv.spec, false, None).await?;
                self.ready(a, id).await.map(drop)
            }
            Step::Discard => {
                self.delete(b, id).await?;
                self.gone(b, id).await
            }
            _ => anyhow::bail!(
                "the kubernetes driver has no migration step {}",
                step.as_str()
            ),
        }
    }

    /// Copies Secret `from` of the cell's namespace in one placement to `to` in another's,
    /// unless it is there already. A Secret the source does not have (an rds cell has no
    /// role Secrets) is skipped.
    async fn copy_secret(
        &self,
        namespace: &str,
        (a, from): (&str, &str),
        (b, to): (&str, &str),
    ) -> anyhow::Result<()> {
        let secrets = |placement: &str| -> Api<DynamicObject> {
            let gvk = GroupVersionKind::gvk("", "v1", "Secret");
            let ar = ApiResource::from_gvk_with_plural(&gvk, "secrets");
            Api::namespaced_with(self.cluster(placement).client.clone(), namespace, &ar)
        };
        let (source, target) = (secrets(a), secrets(b));
        if target
            .get_opt(to)
            .await
            .map_err(|e| anyhow::anyhow!("reading Secret {namespace}/{to} in {b}: {e}"))?
            .is_some()
        {
            return Ok(());
        }
        let Some(secret) = source
            .get_opt(from)
            .await
            .map_err(|e| anyhow::anyhow!("reading Secret {namespace}/{from} in {a}: {e}"))?
        else {
            if from == MIGRATOR.0 {
                anyhow::bail!("waiting for the source's {from} in {a}");
            }
            return Ok(());
        };
        let mut copy: Value = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": to,
                "namespace": namespace,
                "labels": secret.metadata.labels,
                "annotations": secret.metadata.annotations,
            },
            "type": secret.data.get("type"),
            "data": secret.data.get("data"),
        });
        // As written, before an API server folds it into `data` (the fake API server keeps it).
        if let Some(written) = secret.data.get("stringData") {
            copy["stringData"] = written.clone();
        }
        let object: DynamicObject = serde_json::from_value(copy)?;
        match target.create(&PostParams::default(), &object).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.is_already_exists() => Ok(()),
            Err(e) => anyhow::bail!("copying Secret {namespace}/{from} from {a} to {b}: {e}"),
        }
    }
}
