//! The foundation stack's lifecycle (alone and driven by the controller) and the RDS
//! instance's lifecycle, against a moto server (PyPI `moto[server]`, started per
//! test; no AWS account is reachable here). moto's CloudFormation creates the key, bucket,
//! subnet group, security group and role; it silently skips `AWS::KMS::Alias`,
//! `AWS::S3::BucketPolicy` and `AWS::SecretsManager::Secret` (so their outputs are absent here)
//! and applies no bucket public-access block or lifecycle rules — those are covered by cfn-lint
//! (`cell_templates.rs`), not by this test.

mod fixtures;
use aws_config::SdkConfig;
use cell_model::{
    Cell, CellSpec, DatabaseEngine, DatabaseSpec, SearchEngine, ServiceReplicas, Tier,
};
use cell_operator::aws::{Foundation, StackState};
use sqlx::Connection as _;
use test_support::moto::Moto;

mod rds;

fn sdk(moto: &Moto) -> SdkConfig {
    rds::sdk(moto, "us-east-1")
}

use rds::network;

fn cell(tenant: &str, tier: Tier) -> Cell {
    let id = format!("c-{tenant}-1234");
    Cell::new(
        &id,
        CellSpec {
            cell_id: id.clone(),
            tenant: tenant.into(),
            tier,
            version: "1.4.2".into(),
            replicas: ServiceReplicas::default(),
            database: DatabaseSpec {
                engine: DatabaseEngine::Rds,
                class: None,
                storage_gib: 100,
                multi_az: true,
            },
            search: SearchEngine::Meilisearch,
            placement: "eks-us-east-1".into(),
            suspended: false,
            email_domains: Vec::new(),
            bootstrap: None,
            migration: None,
            restore: None,
        },
    )
}

fn outputs(state: StackState) -> std::collections::BTreeMap<String, String> {
    match state {
        StackState::Ready(outputs) => outputs,
        other => panic!("expected a ready stack, got {other:?}"),
    }
}

#[tokio::test]
async fn the_foundation_is_created_once_updated_on_change_and_deleted() {
    let moto = Moto::start();
    let sdk = sdk(&moto);
    let settings = network(&sdk).await;
    let foundation = Foundation::new(&sdk, settings);
    let cfn = aws_sdk_cloudformation::Client::new(&sdk);
    let acme = cell("acme", Tier::Standard);

    assert_eq!(
        foundation.observe(&acme).await.expect("observe"),
        StackState::Absent
    );
    let out = outputs(foundation.ensure(&acme).await.expect("create"));
    for key in [
        "KeyArn",
        "BucketName",
        "DbSubnetGroupName",
        "DbSecurityGroupId",
        "IrsaRoleArn",
    ] {
        assert!(
            out.get(key).is_some_and(|v| !v.is_empty()),
            "output {key}: {out:?}"
        );
    }
    assert_eq!(out["DbSubnetGroupName"], "mrbill-c-acme-1234");
    assert!(
        out["KeyArn"].starts_with("arn:aws:kms:us-east-1:"),
        "{out:?}"
    );

    // Tagged for cost allocation; the template and parameters are what the operator sent.
    let described = cfn
        .describe_stacks()
        .stack_name("mrbill-c-acme-1234")
        .send()
        .await
        .expect("describe");
    let stack = &described.stacks()[0];
    let tags: std::collections::BTreeMap<&str, &str> = stack
        .tags()
        .iter()
        .filter_map(|t| Some((t.key()?, t.value()?)))
        .collect();
    assert_eq!(tags["mrbill:tenant"], "acme");
    assert_eq!(tags["mrbill:cell"], "c-acme-1234");
    assert_eq!(tags["mrbill:tier"], "standard");

    // Idempotent: ensuring again neither creates nor updates anything.
    assert_eq!(outputs(foundation.ensure(&acme).await.expect("again")), out);
    let stacks = cfn.describe_stacks().send().await.expect("list");
    let ours: Vec<_> = stacks
        .stacks()
        .iter()
        .filter(|s| s.stack_name() == Some("mrbill-c-acme-1234"))
        .collect();
    assert_eq!(ours.len(), 1);
    assert!(
        ours[0].last_updated_time().is_none(),
        "no update without a change"
    );

    // A changed parameter (the tier) updates the stack in place.
    let bigger = cell("acme", Tier::Large);
    let after = outputs(foundation.ensure(&bigger).await.expect("update"));
    assert_eq!(after["KeyArn"], out["KeyArn"], "the key survives an update");
    let described = cfn
        .describe_stacks()
        .stack_name("mrbill-c-acme-1234")
        .send()
        .await
        .expect("describe");
    let tier = described.stacks()[0]
        .parameters()
        .iter()
        .find(|p| p.parameter_key() == Some("Tier"))
        .and_then(|p| p.parameter_value())
        .map(str::to_owned);
    assert_eq!(tier.as_deref(), Some("large"));

    // Another cell gets its own stack and its own bucket and key.
    let beta = outputs(
        foundation
            .ensure(&cell("beta", Tier::Small))
            .await
            .expect("beta"),
    );
    assert_ne!(beta["BucketName"], out["BucketName"]);
    assert_ne!(beta["KeyArn"], out["KeyArn"]);

    // Delete: gone (and deleting again is fine).
    assert!(foundation.delete(&bigger).await.expect("delete"));
    assert_eq!(
        foundation.observe(&bigger).await.expect("observe"),
        StackState::Absent
    );
    assert!(foundation.delete(&bigger).await.expect("delete again"));
    assert!(matches!(
        foundation
            .observe(&cell("beta", Tier::Small))
            .await
            .expect("beta"),
        StackState::Ready(_)
    ));
}

const CELLS: &str = "apis/mrbill.dev/v1alpha1/cells";

fn insert_cell(api: &kube_fake::FakeApi, cell: &Cell) {
    let mut object = serde_json::to_value(cell).expect("json");
    object["apiVersion"] = serde_json::json!("mrbill.dev/v1alpha1");
    object["kind"] = serde_json::json!("Cell");
    api.insert(CELLS, object);
}

fn stored(api: &kube_fake::FakeApi, name: &str) -> Option<Cell> {
    api.get(CELLS, name)
        .map(|v| serde_json::from_value(v).expect("a Cell"))
}

/// The controller with AWS: the Kubernetes API is `kube_fake` (no cluster here), AWS is moto.
/// moto's CloudFormation skips the template's Secrets Manager secret, so the test creates the
/// master credentials the stack would have generated. moto's instance runs no Postgres: the
/// operator's real role maker works on a local TLS-only stand-in (`rds/`) instead of the
/// instance's address.
#[tokio::test]
async fn the_controller_builds_an_rds_cell_and_removes_it_with_a_final_snapshot() {
    use cell_operator::aws::AwsClients;
    use cell_operator::controller::{Context, reconcile};
    use std::sync::Arc;

    let moto = Moto::start();
    let sdk = sdk(&moto);
    let instance = rds::RdsInstance::start().await;
    let settings = network(&sdk).await;
    let aws = AwsClients::new(&sdk, settings.clone()).with_admin(instance.admin());
    let foundation = aws.foundation.clone();
    instance.store_master(&sdk, "c-acme-1234").await;
    let api = kube_fake::FakeApi::new();
    let acme = cell("acme", Tier::Standard);
    insert_cell(&api, &acme);
    // What an older operator left in the namespace: the master password, for a roles Job.
    let secrets = "api/v1/namespaces/cell-acme/secrets";
    let jobs = "apis/batch/v1/namespaces/cell-acme/jobs";
    api.insert(
        secrets,
        serde_json::json!({ "apiVersion": "v1", "kind": "Secret",
            "metadata": { "name": "rds-master", "namespace": "cell-acme" },
            "stringData": { "password": "the-master-password" } }),
    );
    api.insert(
        jobs,
        serde_json::json!({ "apiVersion": "batch/v1", "kind": "Job",
            "metadata": { "name": "rds-roles", "namespace": "cell-acme" } }),
    );
    let run = |ctx: Arc<Context>| {
        let api = api.clone();
        async move {
            reconcile(Arc::new(stored(&api, "c-acme-1234").expect("cell")), ctx)
                .await
                .expect("reconcile")
        }
    };
    let condition = |api: &kube_fake::FakeApi| {
        let status = stored(api, "c-acme-1234")
            .and_then(|c| c.status)
            .expect("status");
        let database = status.condition("DatabaseReady").expect("condition");
        (
            database.status,
            database.reason.clone(),
            database.message.clone(),
        )
    };

    // The instance does not answer yet: the cell waits for its roles, saying why.
    let unreachable = AwsClients::new(&sdk, settings).with_admin(rds::unreachable());
    run(Context::new(
        api.client(),
        fixtures::images(),
        Some(unreachable),
        None,
    ))
    .await;
    let (ready, reason, message) = condition(&api);
    assert_eq!(
        (ready, reason.as_str()),
        (cell_model::ConditionStatus::False, "RolesPending")
    );
    assert!(
        message.contains("creating the services' roles"),
        "{message}"
    );

    let ctx = Context::new(api.client(), fixtures::images(), Some(aws.clone()), None);
    run(ctx.clone()).await;
    assert!(matches!(
        foundation.observe(&acme).await.expect("observe"),
        StackState::Ready(_)
    ));
    let address = match aws.rds.observe(&acme).await.expect("instance") {
        cell_operator::aws::InstanceState::Available { address, .. } => address,
        other => panic!("{other:?}"),
    };
    // The instance's address reaches the cell as one role + database URL per service (TLS
    // required); the master password is nowhere in the namespace.
    assert!(
        api.get(secrets, "rds-master").is_none(),
        "the master password was removed"
    );
    assert!(
        api.get(jobs, "rds-roles").is_none(),
        "the old roles Job was removed"
    );
    let poc = api.get(secrets, "poc-database").expect("poc-database");
    let url = poc["stringData"]["url"].as_str().expect("url").to_owned();
    assert!(
        url.starts_with("postgres://poc:")
            && url.contains(&address)
            && url.ends_with("/poc?sslmode=require"),
        "{url}"
    );
    // The operator made the roles: each service reaches its own database over TLS, and no
    // other service's.
    for service in cell_model::contract::Service::ALL.map(cell_model::contract::Service::name) {
        let secret = api
            .get(secrets, &format!("{service}-database"))
            .expect("secret");
        let own = instance.local(secret["stringData"]["url"].as_str().expect("url"));
        let mut conn = sqlx::PgConnection::connect(&own)
            .await
            .unwrap_or_else(|e| panic!("{service}: {e}"));
        sqlx::raw_sql("CREATE TABLE mine (x int)")
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{service} owns its database: {e}"));
        let other = if service == "poc" { "dojo" } else { "poc" };
        let elsewhere = own.replace(&format!("/{service}?"), &format!("/{other}?"));
        let refused = sqlx::PgConnection::connect(&elsewhere).await;
        assert!(refused.is_err(), "{service} reached {other}'s database");
    }
    let (ready, reason, message) = condition(&api);
    assert_eq!(
        (ready, reason.as_str(), message.as_str()),
        (
            cell_model::ConditionStatus::True,
            "RdsAvailable",
            address.as_str()
        )
    );
    // media stores artifacts in the cell's bucket, with the cell's IRSA role.
    let outputs = match foundation.observe(&acme).await.expect("observe") {
        StackState::Ready(outputs) => outputs,
        other => panic!("{other:?}"),
    };
    let config = api
        .get("api/v1/namespaces/cell-acme/configmaps", "aws-foundation")
        .expect("aws-foundation");
    assert_eq!(config["data"]["bucket"], outputs["BucketName"].as_str());
    let sa = api
        .get("api/v1/namespaces/cell-acme/serviceaccounts", "cell")
        .expect("sa");
    assert_eq!(
        sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"],
        outputs["IrsaRoleArn"].as_str()
    );
    let media = api
        .get(
            "apis/apps/v1/namespaces/cell-acme/deployments",
            "media-service",
        )
        .expect("media");
    let env = media["spec"]["template"]["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .clone();
    let bucket = env
        .iter()
        .find(|e| e["name"] == "MRBILL_MEDIA_S3_BUCKET")
        .expect("bucket env");
    assert_eq!(
        bucket["valueFrom"]["configMapKeyRef"]["name"],
        "aws-foundation"
    );
    assert!(
        env.iter().all(|e| e["name"] != "MRBILL_MEDIA_DIR"),
        "no pod-local artifacts"
    );
    assert!(
        api.get(
            "apis/networking.k8s.io/v1/namespaces/cell-acme/networkpolicies",
            "services-to-aws"
        )
        .is_some(),
        "an rds cell's pods may reach AWS"
    );

    // A second reconcile changes nothing; deleting a service's Secret rolls its password.
    run(ctx.clone()).await;
    assert_eq!(
        api.get(secrets, "poc-database").expect("kept")["stringData"]["url"],
        url.as_str(),
        "never regenerated"
    );
    api.delete(secrets, "poc-database");
    run(ctx.clone()).await;
    let rolled = api.get(secrets, "poc-database").expect("recreated")["stringData"]["url"]
        .as_str()
        .expect("url")
        .to_owned();
    assert_ne!(rolled, url);
    sqlx::PgConnection::connect(&instance.local(&rolled))
        .await
        .expect("the new password works");
    assert!(
        sqlx::PgConnection::connect(&instance.local(&url))
            .await
            .is_err(),
        "the old password no longer does"
    );

    // Deleting the Cell: namespace, then the instance after a final snapshot, then the stack.
    api.delete(CELLS, "c-acme-1234");
    for _ in 0..6 {
        let Some(cell) = stored(&api, "c-acme-1234") else {
            break;
        };
        reconcile(Arc::new(cell), ctx.clone())
            .await
            .expect("cleanup");
    }
    assert!(stored(&api, "c-acme-1234").is_none(), "the Cell is gone");
    assert_eq!(
        aws.rds.observe(&acme).await.expect("observe"),
        cell_operator::aws::InstanceState::Absent
    );
    assert_eq!(
        foundation.observe(&acme).await.expect("observe"),
        StackState::Absent
    );
    let snapshots = aws_sdk_rds::Client::new(&sdk)
        .describe_db_snapshots()
        .send()
        .await
        .expect("snapshots");
    let finals: Vec<&str> = snapshots
        .db_snapshots()
        .iter()
        .filter_map(|s| s.db_snapshot_identifier())
        .filter(|id| id.starts_with("mrbill-c-acme-1234-final-"))
        .collect();
    assert_eq!(finals.len(), 1, "one final snapshot: {finals:?}");

    // Without AWS settings an rds cell says so instead of failing.
    let bare = Context::new(api.client(), fixtures::images(), None, None);
    let foundation = aws.foundation.clone();
    let beta = cell("beta", Tier::Small);
    insert_cell(&api, &beta);
    reconcile(Arc::new(stored(&api, "c-beta-1234").expect("cell")), bare)
        .await
        .expect("reconcile");
    let status = stored(&api, "c-beta-1234")
        .and_then(|c| c.status)
        .expect("status");
    assert_eq!(
        status.condition("DatabaseReady").expect("condition").reason,
        "AwsNotConfigured"
    );
    assert_eq!(
        foundation.observe(&beta).await.expect("observe"),
        StackState::Absent
    );
}

#[tokio::test]
async fn an_rds_instance_is_created_scaled_snapshotted_on_delete_and_restored() {
    use cell_operator::aws::{InstanceState, MasterCredentials, Rds};

    let moto = Moto::start();
    let sdk = sdk(&moto);
    let foundation = Foundation::new(&sdk, network(&sdk).await);
    let mut acme = cell("acme", Tier::Standard);
    let out = outputs(foundation.ensure(&acme).await.expect("foundation"));
    let rds = Rds::new(&sdk);
    let client = aws_sdk_rds::Client::new(&sdk);
    let master = MasterCredentials {
        username: "mrbill".into(),
        password: secrecy::SecretString::from("s".repeat(32)),
    };

    let state = rds.ensure(&acme, &out, &master).await.expect("create");
    let InstanceState::Available {
        address,
        port,
        class,
        storage_gib,
    } = &state
    else {
        panic!("moto creates instances synchronously: {state:?}");
    };
    assert!(!address.is_empty());
    assert_eq!(*port, 5432);
    assert_eq!(class, Tier::Standard.template().db_class);
    assert_eq!(*storage_gib, 100);
    let described = client
        .describe_db_instances()
        .db_instance_identifier("mrbill-c-acme-1234")
        .send()
        .await
        .expect("describe");
    let db = &described.db_instances()[0];
    assert_eq!(db.multi_az(), Some(true));
    assert_eq!(
        db.backup_retention_period(),
        Some(Tier::Standard.template().backup_retention_days as i32),
        "automated backups kept for the tier's retention"
    );
    assert_eq!(db.storage_encrypted(), Some(true));
    assert_eq!(
        db.kms_key_id(),
        Some(out["KeyArn"].as_str()),
        "encrypted with the cell's key"
    );
    assert_eq!(db.deletion_protection(), Some(true));
    assert_eq!(
        db.db_subnet_group().and_then(|g| g.db_subnet_group_name()),
        Some("mrbill-c-acme-1234")
    );
    // Logical replication on (a move replicates to the target's instance), for the major
    // version instances are made with.
    assert_eq!(
        db.db_parameter_groups()
            .first()
            .and_then(|g| g.db_parameter_group_name()),
        Some(cell_operator::aws::PARAMETER_GROUP)
    );
    let groups = client
        .describe_db_parameter_groups()
        .db_parameter_group_name(cell_operator::aws::PARAMETER_GROUP)
        .send()
        .await
        .expect("the parameter group");
    assert_eq!(
        groups.db_parameter_groups()[0].db_parameter_group_family(),
        Some(format!("postgres{}", cell_operator::aws::POSTGRES_VERSION).as_str())
    );
    let parameters = client
        .describe_db_parameters()
        .db_parameter_group_name(cell_operator::aws::PARAMETER_GROUP)
        .send()
        .await
        .expect("its parameters");
    assert!(
        parameters.parameters().iter().any(|p| {
            p.parameter_name() == Some("rds.logical_replication")
                && p.parameter_value() == Some("1")
        }),
        "{parameters:?}"
    );
    let tags: std::collections::BTreeMap<&str, &str> = db
        .tag_list()
        .iter()
        .filter_map(|t| Some((t.key()?, t.value()?)))
        .collect();
    assert_eq!(
        (
            tags["mrbill:tenant"],
            tags["mrbill:cell"],
            tags["mrbill:tier"]
        ),
        ("acme", "c-acme-1234", "standard")
    );

    // Idempotent: nothing new, nothing modified.
    assert_eq!(
        rds.ensure(&acme, &out, &master).await.expect("again"),
        state
    );
    let all = client.describe_db_instances().send().await.expect("list");
    assert_eq!(all.db_instances().len(), 1);

    // Scaling goes through ModifyDBInstance.
    acme.spec.database.class = Some("db.r6g.large".into());
    acme.spec.database.storage_gib = 200;
    let scaled = rds.ensure(&acme, &out, &master).await.expect("scale");
    assert!(
        matches!(&scaled, InstanceState::Available { class, storage_gib: 200, .. } if class == "db.r6g.large"),
        "{scaled:?}"
    );

    // Deletion: deletion protection lifted, a final snapshot taken, the instance gone.
    let snapshot = rds
        .delete(&acme, "mrbill-c-acme-1234-final")
        .await
        .expect("delete");
    assert_eq!(snapshot.as_deref(), Some("mrbill-c-acme-1234-final"));
    assert_eq!(
        rds.observe(&acme).await.expect("observe"),
        InstanceState::Absent
    );
    let snapshots = client
        .describe_db_snapshots()
        .db_snapshot_identifier("mrbill-c-acme-1234-final")
        .send()
        .await
        .expect("the final snapshot exists");
    assert_eq!(snapshots.db_snapshots().len(), 1);
    assert!(
        rds.delete(&acme, "mrbill-c-acme-1234-final")
            .await
            .expect("again")
            .is_some()
    );

    // Restore (a deleted cell's return): the cell's instance comes back from the snapshot,
    // tagged with the restore and as waiting for its master password.
    rds.restore_snapshot(&acme, &out, "mrbill-c-acme-1234-final", "r-1")
        .await
        .expect("restore");
    let restored = rds
        .instance("mrbill-c-acme-1234")
        .await
        .expect("describe")
        .expect("restored");
    assert!(
        matches!(restored.state, InstanceState::Available { .. }),
        "{restored:?}"
    );
    assert_eq!(restored.restore.as_deref(), Some("r-1"));
    assert!(restored.master_reset, "{restored:?}");
    rds.reset_master("mrbill-c-acme-1234", &master)
        .await
        .expect("reset");
    let reset = rds.instance("mrbill-c-acme-1234").await.expect("describe");
    assert!(!reset.expect("there").master_reset, "the tag dropped");
    let described = client
        .describe_db_instances()
        .db_instance_identifier("mrbill-c-acme-1234")
        .send()
        .await
        .expect("describe");
    assert_eq!(
        described.db_instances()[0].deletion_protection(),
        Some(true)
    );
}
