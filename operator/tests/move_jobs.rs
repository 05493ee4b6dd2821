//! A move's schema Job, started for real: the source cell's Postgres (the CloudNativePG
//! stand-in of `kubelet/cnpg.rs`, with the `migrator` role the move adds), a schema in poc's
//! database; the target cell's Postgres; then the target's rendered `schema-poc` Job runs — the
//! Postgres image's shell, `pg_dump` and `psql` from this machine, with the Job's env, Secret
//! files, modes and user — and reaches the source by the cross-cluster name the control plane
//! gives it, verified (`verify-full`) with the source's CA.
//!
//! The same for an `rds` target: two TLS-only Postgres standing in for the instances (see
//! `rds/mod.rs`), the source published by the operator's own SQL as its master, the target's
//! rendered Job reaching it by its instance address (TLS required, as the services reach RDS).

mod fixtures;
mod kubelet;
mod rds;

use cell_model::{
    CellMigration, DatabaseEngine, MigrationPhase, MigrationRole, SearchEngine, Tier,
};
use cell_operator::render::desired;
use cell_operator::secrets;
use kubelet::Kubelet;
use serde_json::Value;

/// How the target's cluster reaches the source's Postgres (the control plane's default).
const SOURCE_HOST: &str = "postgres-rw.cell-acme.svc.clusterset.local";

fn cell(migration: CellMigration) -> cell_model::Cell {
    cell_of(DatabaseEngine::InCluster, migration)
}

fn cell_of(engine: DatabaseEngine, migration: CellMigration) -> cell_model::Cell {
    let mut cell = fixtures::cell(Tier::Small, engine, SearchEngine::Embedded);
    cell.spec.migration = Some(migration);
    cell
}

fn named<'a>(objects: &'a [Value], name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == "Secret" && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("Secret {name}"))
}

/// `secret` under another name (what the control plane's copy makes).
fn renamed(secret: &Value, name: &str) -> Value {
    let mut copy = secret.clone();
    copy["metadata"]["name"] = name.into();
    copy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_job_copies_the_source_schema_over_the_clusters() {
    let source = cell(CellMigration {
        role: MigrationRole::Source,
        id: "m-1".into(),
        fenced: false,
        source_host: None,
        phase: None,
    });
    let mut source_objects = desired(&source, &fixtures::images());
    let source_secrets = secrets::generate(&source).expect("secrets");
    let ca =
        named(&source_secrets, cell_operator::render::POSTGRES_TLS_SECRET)["stringData"]["ca.crt"]
            .as_str()
            .expect("the source's CA")
            .to_owned();
    let bucket = cell_operator::aws::Bucket {
        name: "mrbill-c-acme-1234-a1b2".into(),
        region: "us-east-1".into(),
        store: Some(cell_operator::aws::Store {
            endpoint: "https://objects.a.example".into(),
            access_key_id: "key".into(),
            secret_access_key: "secret".into(),
        }),
    };
    let migrator = secrets::migrator(&source, &ca, &bucket);
    source_objects.extend(source_secrets.iter().cloned());
    source_objects.push(migrator.clone());

    let target = cell(CellMigration {
        role: MigrationRole::Target,
        id: "m-1".into(),
        fenced: false,
        source_host: Some(SOURCE_HOST.into()),
        phase: Some(MigrationPhase::Copy),
    });
    let mut target_objects = desired(&target, &fixtures::images());
    // The target's own Postgres TLS; the identity (keys, the services' credentials) and the
    // source's replication credentials are the control plane's copies of the source's.
    let own = secrets::generate(&target).expect("secrets");
    target_objects.push(named(&own, cell_operator::render::POSTGRES_TLS_SECRET).clone());
    for name in cell_model::identity::names(DatabaseEngine::InCluster) {
        target_objects.push(named(&source_secrets, &name).clone());
    }
    target_objects.push(renamed(&migrator, cell_model::identity::MIGRATION_SOURCE));
    assert!(
        target_objects
            .iter()
            .any(|o| o["kind"] == "Job" && o["metadata"]["name"] == "schema-poc"),
        "a copying target renders its schema Jobs"
    );

    let poc_url = |objects: &[Value]| {
        named(objects, &cell_operator::render::database_secret("poc"))["stringData"]["url"]
            .as_str()
            .expect("poc's database URL")
            .to_owned()
    };
    let url = poc_url(&source_objects);
    let kubelets = tokio::task::spawn_blocking(move || {
        let mut a = Kubelet::new("cell-acme", source_objects);
        a.start_cnpg(cell_operator::render::POSTGRES_CLUSTER);
        let source_port = a.port("postgres-rw", 5432);
        let mut b =
            Kubelet::new("cell-acme", target_objects).with_external(SOURCE_HOST, 5432, source_port);
        b.start_cnpg(cell_operator::render::POSTGRES_CLUSTER);
        (a, b)
    })
    .await
    .expect("both Postgres start");
    let (a, mut b) = kubelets;

    source_schema(&a.localize(&url, None)).await;

    let mut b = tokio::task::spawn_blocking(move || {
        b.start("Job", "schema-poc");
        b
    })
    .await
    .expect("the schema Job succeeds");
    assert_schema_only(&b.localize(&url, None)).await;

    // A Job that runs again (a retried pod) finds the schema there and changes nothing.
    let b = tokio::task::spawn_blocking(move || {
        b.start("Job", "schema-poc");
        b
    })
    .await
    .expect("the schema Job succeeds again");
    drop((a, b));
}

/// The source's schema, made by poc as it migrates: a table with a sequence, a constraint, an
/// index and rows (which the schema copy leaves to the subscription).
async fn source_schema(poc_url: &str) {
    let src = sqlx::PgPool::connect(poc_url)
        .await
        .expect("poc on the source");
    sqlx::raw_sql(
        "CREATE TABLE pocs (id bigserial PRIMARY KEY, name text NOT NULL UNIQUE,
                            tags text[] NOT NULL DEFAULT '{}');
         CREATE INDEX pocs_tags ON pocs USING gin (tags);
         INSERT INTO pocs (name) VALUES ('first'), ('second');",
    )
    .execute(&src)
    .await
    .expect("the source's schema");
}

/// What the target's copy holds: the source's table with its indexes, owned by the service's
/// role, and no rows.
async fn assert_schema_only(target_url: &str) {
    let dst = sqlx::PgPool::connect(target_url)
        .await
        .expect("poc on the target");
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT tablename::text, tableowner::text FROM pg_tables WHERE schemaname = 'public'",
    )
    .fetch_all(&dst)
    .await
    .expect("tables");
    assert_eq!(tables, [("pocs".to_owned(), "poc".to_owned())]);
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM pocs")
        .fetch_one(&dst)
        .await
        .expect("rows");
    assert_eq!(rows, 0, "rows come through the subscription");
    let indexes: i64 =
        sqlx::query_scalar("SELECT count(*) FROM pg_indexes WHERE tablename = 'pocs'")
            .fetch_one(&dst)
            .await
            .expect("indexes");
    assert_eq!(indexes, 3, "primary key, unique name, tags");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_rds_targets_schema_job_copies_the_source_instances_schema() {
    use cell_operator::roles::{DatabaseAdmin as _, Postgres, Replication, Role};
    const SOURCE: &str = "mrbill-c-acme-1234.a1.sa-east-1.rds.amazonaws.com";
    const TARGET: &str = "mrbill-c-acme-1234.b2.us-east-1.rds.amazonaws.com";
    let (a, b) = tokio::join!(
        rds::RdsInstance::start_for_moves(),
        rds::RdsInstance::start_for_moves()
    );
    let source = cell_of(
        DatabaseEngine::Rds,
        CellMigration {
            role: MigrationRole::Source,
            id: "m-1".into(),
            fenced: false,
            source_host: None,
            phase: None,
        },
    );
    let target = cell_of(
        DatabaseEngine::Rds,
        CellMigration {
            role: MigrationRole::Target,
            id: "m-1".into(),
            fenced: false,
            source_host: Some(SOURCE.into()),
            phase: Some(MigrationPhase::Copy),
        },
    );
    // Each instance's database Secrets, and the roles its operator makes from them.
    let (secrets_a, secrets_b) = (
        secrets::rds(&source, SOURCE, 5432),
        secrets::rds(&target, TARGET, 5432),
    );
    let roles = |secrets: &[Value]| -> Vec<Role> {
        secrets
            .iter()
            .map(|s| Role {
                name: s["metadata"]["name"]
                    .as_str()
                    .and_then(|n| n.strip_suffix("-database"))
                    .expect("a database Secret")
                    .to_owned(),
                password: secrets::password_of(s["stringData"]["url"].as_str().expect("url"))
                    .expect("password")
                    .to_owned()
                    .into(),
            })
            .collect()
    };
    for (instance, secrets) in [(&a, &secrets_a), (&b, &secrets_b)] {
        Postgres
            .ensure_roles(&instance.server(), &instance.master, &roles(secrets))
            .await
            .expect("the services' roles");
    }
    let poc_url = |objects: &[Value]| {
        named(objects, &cell_operator::render::database_secret("poc"))["stringData"]["url"]
            .as_str()
            .expect("poc's database URL")
            .to_owned()
    };
    source_schema(&a.local(&poc_url(&secrets_a))).await;
    // The source's operator: its migrator Secret, then the migrator and publications as the
    // instance's master.
    let bucket = cell_operator::aws::Bucket {
        name: "mrbill-c-acme-1234-objects".into(),
        region: "sa-east-1".into(),
        store: None,
    };
    let migrator = secrets::rds_migrator(&source, SOURCE, &bucket);
    let role = Role {
        name: "migrator".into(),
        password: migrator["stringData"]["password"]
            .as_str()
            .expect("password")
            .to_owned()
            .into(),
    };
    Postgres
        .replicate(
            &a.server(),
            &a.master,
            &["poc", "dojo", "media"],
            Replication::Publish { migrator: &role },
        )
        .await
        .expect("published");

    let mut objects = desired(&target, &fixtures::images());
    objects.extend(secrets_b.iter().cloned());
    objects.push(renamed(&migrator, cell_model::identity::MIGRATION_SOURCE));
    let (source_port, target_port) = (a.port(), b.port());
    let b_url = b.local(&poc_url(&secrets_b));
    let kubelet = tokio::task::spawn_blocking(move || {
        let mut kubelet = Kubelet::new("cell-acme", objects)
            .with_external(SOURCE, 5432, source_port)
            .with_external(TARGET, 5432, target_port);
        kubelet.start("Job", "schema-poc");
        // A retried pod finds the schema there and changes nothing.
        kubelet.start("Job", "schema-poc");
        kubelet
    })
    .await
    .expect("the schema Job succeeds, twice");
    assert_schema_only(&b_url).await;
    tokio::task::spawn_blocking(move || drop((kubelet, a, b)))
        .await
        .expect("stopped");
}
