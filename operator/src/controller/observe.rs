//! What the cluster says about a cell: its workloads' readiness, its RDS roles, and the
//! conditions and phase that follow.

use cell_model::contract::Service;
use cell_model::{
    Cell, CellStatus, Condition, ConditionStatus, DatabaseEngine, Phase, SearchEngine,
};
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::apply;
use crate::aws::{AwsClients, InstanceState, MasterCredentials, StackState};
use crate::error::Error;
use crate::render::{self, PUBLIC_PORT, namespace};
use crate::roles::{Role, Server};

use super::*;

pub(super) fn ready_replicas(object: &Option<Value>) -> i64 {
    object
        .as_ref()
        .and_then(|o| o["status"]["readyReplicas"].as_i64())
        .unwrap_or(0)
}

/// Whether the cell's CNPG Cluster has a ready instance and every service's `Database` is
/// applied: `(ready, reason, message)`.
async fn cnpg(client: &kube::Client, cell: &Cell) -> Result<(bool, &'static str, String), Error> {
    let cluster = apply::get(client, cell, "Cluster", render::POSTGRES_CLUSTER).await?;
    let ready = cluster
        .as_ref()
        .and_then(|c| c["status"]["readyInstances"].as_i64())
        .unwrap_or(0);
    if ready == 0 {
        let phase = cluster
            .as_ref()
            .and_then(|c| c["status"]["phase"].as_str())
            .unwrap_or("no status yet");
        return Ok((false, "PostgresStarting", format!("CloudNativePG: {phase}")));
    }
    let mut pending = Vec::new();
    for service in Service::ALL.map(Service::name) {
        let database = apply::get(
            client,
            cell,
            "Database",
            &render::database_resource(service),
        )
        .await?;
        let applied = database
            .as_ref()
            .is_some_and(|d| d["status"]["applied"] == true);
        if !applied {
            let why = database
                .as_ref()
                .and_then(|d| d["status"]["message"].as_str())
                .filter(|m| !m.is_empty())
                .map_or_else(|| service.to_owned(), |m| format!("{service}: {m}"));
            pending.push(why);
        }
    }
    Ok(match pending.is_empty() {
        true => (true, "PostgresRunning", String::new()),
        false => (
            false,
            "DatabasesPending",
            format!("waiting for databases {}", pending.join(", ")),
        ),
    })
}

/// Makes the services' roles in an `rds` cell's available instance as the master user, from
/// the operator itself (unless the status says they were made at this address and no
/// database Secret is new: a recreated Secret's password is set on its role); removes what
/// cells made before that kept the master password in their namespace. `Err` inside: why the
/// roles are not there yet (retried on the next pass).
pub(super) async fn rds_roles(
    cell: &Cell,
    ctx: &Context,
    aws: &AwsClients,
    (host, port): (&str, i32),
    master: &MasterCredentials,
    new_secrets: bool,
) -> Result<Result<(), String>, Error> {
    for (kind, name) in [
        ("Job", render::RDS_ROLES_JOB),
        ("Secret", render::RDS_MASTER_SECRET),
    ] {
        if apply::remove(&ctx.client, cell, kind, name).await? {
            tracing::info!(cell = %cell.name_any(), kind, name, "removed what held the master password");
        }
    }
    let made = cell
        .status
        .as_ref()
        .and_then(|s| s.condition("DatabaseReady"))
        .is_some_and(|c| {
            c.status == ConditionStatus::True && c.reason == "RdsAvailable" && c.message == host
        });
    if made && !new_secrets {
        return Ok(Ok(()));
    }
    let mut roles = Vec::new();
    for service in Service::ALL.map(Service::name) {
        let name = render::database_secret(service);
        let url = apply::secret_value(&ctx.client, cell, &name, "url").await?;
        let Some(password) = url.as_deref().and_then(crate::secrets::password_of) else {
            return Ok(Err(format!(
                "Secret {name} holds no database URL with a password"
            )));
        };
        roles.push(Role {
            name: service.to_owned(),
            password: password.to_owned().into(),
        });
    }
    let Ok(port) = u16::try_from(port) else {
        return Ok(Err(format!("the instance's port {port} is not a TCP port")));
    };
    let server = Server {
        host: host.to_owned(),
        port,
    };
    Ok(aws
        .admin
        .ensure_roles(&server, master, &roles)
        .await
        .map_err(|e| format!("{host}: creating the services' roles: {e}")))
}

/// The status the cell's objects show now. `roles`: whether an `rds` cell's roles are made.
pub(super) async fn observe(
    cell: &Cell,
    ctx: &Context,
    previous: &CellStatus,
    aws: Option<&Aws>,
    roles: Option<Result<(), String>>,
    rds_move: Option<super::rds_move::RdsMove>,
) -> Result<CellStatus, Error> {
    let client = &ctx.client;
    let mut status = previous.clone();
    status.observed_generation = cell.meta().generation;
    let ns = namespace(cell);

    let database = match cell.spec.database.engine {
        DatabaseEngine::InCluster => {
            let (up, reason, message) = cnpg(client, cell).await?;
            set(&mut status, "DatabaseReady", up, reason, &message);
            up
        }
        DatabaseEngine::Local => {
            set(
                &mut status,
                "DatabaseReady",
                false,
                "UnsupportedEngine",
                "database engine `local` is the local driver's; a cluster cell uses `in-cluster` or `rds`",
            );
            false
        }
        DatabaseEngine::Rds => {
            let (ok, reason, message) = match aws {
                None | Some(Aws::NotConfigured) => (
                    false,
                    "AwsNotConfigured",
                    "the operator has no AWS settings (MRBILL_OPERATOR_AWS_*)".to_owned(),
                ),
                Some(Aws::Foundation(StackState::Ready(_), Some(instance))) => match instance {
                    InstanceState::Available { address, .. } => match &roles {
                        Some(Ok(())) => (true, "RdsAvailable", address.clone()),
                        Some(Err(why)) => (false, "RolesPending", why.clone()),
                        None => (
                            false,
                            "RolesPending",
                            format!("{address}: creating the services' roles"),
                        ),
                    },
                    InstanceState::InProgress(s) => {
                        (false, "InstanceInProgress", format!("RDS instance {s}"))
                    }
                    InstanceState::Failed(s) => {
                        (false, "InstanceFailed", format!("RDS instance {s}"))
                    }
                    InstanceState::Absent => (
                        false,
                        "InstanceInProgress",
                        "RDS instance requested".to_owned(),
                    ),
                },
                Some(Aws::Foundation(StackState::Ready(_), None)) => (
                    false,
                    "InstanceInProgress",
                    "RDS instance requested".to_owned(),
                ),
                Some(Aws::Foundation(StackState::Failed { status, reason }, _)) => {
                    (false, "FoundationFailed", format!("{status}: {reason}"))
                }
                Some(Aws::Foundation(StackState::InProgress(s), _)) => {
                    (false, "FoundationInProgress", format!("stack {s}"))
                }
                Some(Aws::Foundation(StackState::Absent, _)) => {
                    (false, "FoundationInProgress", "stack requested".to_owned())
                }
            };
            set(&mut status, "DatabaseReady", ok, reason, &message);
            ok
        }
    };
    let search = match cell.spec.search {
        SearchEngine::Embedded => {
            set(
                &mut status,
                "SearchReady",
                true,
                "Embedded",
                "poc-service's own index",
            );
            true
        }
        SearchEngine::Meilisearch => {
            let up =
                ready_replicas(&apply::get(client, cell, "StatefulSet", "meilisearch").await?) > 0;
            let reason = if up {
                "MeilisearchRunning"
            } else {
                "MeilisearchStarting"
            };
            set(&mut status, "SearchReady", up, reason, "");
            up
        }
    };
    // An in-cluster cell's artifacts wait for its bucket (media's pods mount the claim's
    // Secret); an rds cell's bucket comes with its foundation (`DatabaseReady`).
    let objects = match cell.spec.database.engine {
        DatabaseEngine::InCluster => {
            let claim = apply::get(client, cell, "ObjectBucketClaim", render::MEDIA_BUCKET).await?;
            let phase = claim
                .as_ref()
                .and_then(|c| c["status"]["phase"].as_str())
                .unwrap_or("no status yet");
            let bound = phase == "Bound";
            let (reason, message) = match bound {
                true => ("BucketBound", String::new()),
                false => (
                    "BucketPending",
                    format!("ObjectBucketClaim {}: {phase}", render::MEDIA_BUCKET),
                ),
            };
            set(&mut status, "ObjectStoreReady", bound, reason, &message);
            bound
        }
        DatabaseEngine::Rds | DatabaseEngine::Local => true,
    };
    let mut waiting = Vec::new();
    status.endpoints.replicas.clear();
    for service in Service::ALL.map(Service::name) {
        let name = format!("{service}-service");
        let kind = render::workload_kind(service);
        let ready = ready_replicas(&apply::get(client, cell, kind, &name).await?);
        if ready == 0 {
            waiting.push(name);
        }
        status.endpoints.services.insert(
            service.to_owned(),
            format!("http://{service}-service.{ns}.svc:{PUBLIC_PORT}"),
        );
        // Pods routers pin to (dojo's rooms) when there are several: the ready ones by name
        // (a crashed pod may be any ordinal, not the highest).
        if kind == "StatefulSet" && ready > 1 {
            let pods: Vec<String> = apply::ready_ordinals(client, cell, service)
                .await?
                .into_iter()
                .map(|ordinal| render::pod_url(cell, service, ordinal))
                .collect();
            if pods.len() > 1 {
                status.endpoints.replicas.insert(service.to_owned(), pods);
            }
        }
    }
    set(&mut status, "Reconciled", true, "Applied", "");
    let services = waiting.is_empty() && !cell.spec.suspended;
    if cell.spec.suspended {
        set(
            &mut status,
            "ServicesReady",
            false,
            "Suspended",
            "scaled to zero",
        );
    } else if services {
        set(&mut status, "ServicesReady", true, "Running", "");
    } else {
        let message = format!("waiting for {}", waiting.join(", "));
        set(&mut status, "ServicesReady", false, "Starting", &message);
    }

    let ready = database && search && objects && services;
    let was_ready = matches!(previous.phase, Phase::Ready | Phase::Degraded);
    status.phase = if cell.spec.suspended {
        Phase::Suspended
    } else if ready {
        Phase::Ready
    } else if was_ready {
        Phase::Degraded
    } else {
        Phase::Provisioning
    };
    if cell.spec.suspended {
        set(
            &mut status,
            "Ready",
            false,
            "Suspended",
            "the cell is suspended",
        );
    } else if ready {
        set(&mut status, "Ready", true, "Serving", "");
    } else {
        let missing: Vec<&str> = [
            ("DatabaseReady", database),
            ("SearchReady", search),
            ("ObjectStoreReady", objects),
            ("ServicesReady", services),
        ]
        .into_iter()
        .filter(|(_, ok)| !ok)
        .map(|(name, _)| name)
        .collect();
        let reason = if was_ready {
            "Degraded"
        } else {
            "Provisioning"
        };
        set(
            &mut status,
            "Ready",
            false,
            reason,
            &format!("not yet: {}", missing.join(", ")),
        );
    }
    super::backups::observe(client, cell, &mut status).await?;
    super::restore::observe(client, cell, &mut status).await?;
    super::migration::conditions(cell, ctx, &mut status, rds_move).await?;
    Ok(status)
}

/// The Event a change of the `Ready` condition deserves.
pub(super) fn transition(
    previous: &CellStatus,
    now: &CellStatus,
) -> Option<(EventType, &'static str, &'static str)> {
    let was = previous.condition("Ready").map(|c| c.status);
    let is = now.condition("Ready")?;
    if was == Some(is.status) && previous.phase == now.phase {
        return None;
    }
    Some(match (now.phase, is.status) {
        (_, ConditionStatus::True) => (
            EventType::Normal,
            "CellReady",
            "every part of the cell is ready",
        ),
        (Phase::Suspended, _) => (EventType::Normal, "CellSuspended", "scaled to zero"),
        (Phase::Degraded, _) => (
            EventType::Warning,
            "CellDegraded",
            "a part of the cell stopped being ready",
        ),
        _ => return None,
    })
}

pub(super) fn set(status: &mut CellStatus, type_: &str, ok: bool, reason: &str, message: &str) {
    status.set_condition(Condition {
        type_: type_.to_owned(),
        status: if ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        },
        reason: reason.to_owned(),
        message: message.to_owned(),
        last_transition_time: OffsetDateTime::now_utc().format(&Rfc3339).ok(),
    });
}
