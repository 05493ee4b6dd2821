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
//! The control plane copies Secrets by name only, never generates or reads other ones — save
//! the `host` of an `rds` source's migrator Secret: its instance's address, where the target
//! replicates from (in-cluster sources are reached by the placement's cross-cluster name).

use cell_model::move_conditions::{CAUGHT_UP, FENCED, IN_SYNC, PUBLISHED, REPLICATING, VERIFIED};
use cell_model::{CellMigration, CellSpec, MigrationPhase, MigrationRole, identity};
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::Value;

use super::KubeDriver;
use crate::driver::{Move, Step, waiting};

/// The source's replication credentials and CA, and their name on the target.
const MIGRATOR: (&str, &str) = (identity::MIGRATOR, identity::MIGRATION_SOURCE);

impl KubeDriver {
    pub(super) async fn migrate_step(&self, mv: Move<'_>, step: Step) -> anyhow::Result<()> {
        let (a, b, id) = (mv.source, mv.target, mv.spec.cell_id.as_str());
        let namespace = format!("cell-{}", mv.spec.tenant);
        let rds = mv.spec.database.engine == cell_model::DatabaseEngine::Rds;
        // Where the target reaches the source's Postgres (once the source's address is known).
        let source_host = match rds {
            true if matches!(step, Step::Sync | Step::Verify) => {
                Some(self.source_instance(&namespace, b).await?)
            }
            // Named at `copy`, once the source's Secret is copied.
            true => None,
            false => Some(
                self.source_host
                    .replace("{namespace}", &namespace)
                    .replace("{placement}", a),
            ),
        };
        let migration = |role, fenced, phase| CellMigration {
            role,
            id: format!("{id}:{a}->{b}"),
            fenced,
            source_host: (role == MigrationRole::Target)
                .then(|| source_host.clone())
                .flatten(),
            phase,
        };
        let target = |phase| migration(MigrationRole::Target, false, Some(phase));
        // The target's database is made fresh and copied: a restore of the source's is not its.
        let fresh = CellSpec {
            restore: None,
            ..mv.spec.clone()
        };
        match step {
            Step::Target => {
                let m = target(MigrationPhase::Provision);
                self.apply(b, &fresh, false, Some(m)).await?;
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
                let mut copy = target(MigrationPhase::Copy);
                if rds {
                    copy.source_host = Some(self.source_instance(&namespace, b).await?);
                }
                self.apply(b, &fresh, false, Some(copy)).await?;
                self.condition(b, id, REPLICATING).await.map(drop)
            }
            Step::CatchUp => self.condition(b, id, CAUGHT_UP).await.map(drop),
            Step::Fence => {
                let fenced = migration(MigrationRole::Source, true, None);
                self.apply(a, mv.spec, false, Some(fenced)).await?;
                self.condition(a, id, FENCED).await.map(drop)
            }
            Step::Sync => {
                self.apply(b, &fresh, false, Some(target(MigrationPhase::Sync)))
                    .await?;
                self.condition(b, id, IN_SYNC).await.map(drop)
            }
            Step::Verify => {
                self.apply(b, &fresh, false, Some(target(MigrationPhase::Verify)))
                    .await?;
                self.condition(b, id, VERIFIED).await.map(drop)
            }
            Step::Start => {
                self.apply(b, &fresh, false, None).await?;
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

    /// An `rds` source's instance address, from the target's copy of its migrator Secret.
    async fn source_instance(&self, namespace: &str, b: &str) -> anyhow::Result<String> {
        let gvk = GroupVersionKind::gvk("", "v1", "Secret");
        let ar = ApiResource::from_gvk_with_plural(&gvk, "secrets");
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.cluster(b).client.clone(), namespace, &ar);
        let (_, name) = MIGRATOR;
        let Some(secret) = api
            .get_opt(name)
            .await
            .map_err(|e| anyhow::anyhow!("reading Secret {namespace}/{name} in {b}: {e}"))?
        else {
            return Err(waiting(format!(
                "waiting for the copy of the source's {name} in {b}"
            )));
        };
        let written = secret.data["stringData"]["host"]
            .as_str()
            .map(str::to_owned);
        let encoded = secret.data["data"]["host"].as_str().map(|host| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(host)
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
        });
        written
            .or(encoded.flatten())
            .filter(|host| !host.is_empty())
            .ok_or_else(|| anyhow::anyhow!("the source's {name} names no instance (`host`)"))
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
                return Err(waiting(format!("waiting for the source's {from} in {a}")));
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
