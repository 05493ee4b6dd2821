//! A move's schema Job, started for real: the source cell's Postgres (the CloudNativePG
//! stand-in of `kubelet/cnpg.rs`, with the `migrator` role the move adds), a schema in poc's
//! database; the target cell's Postgres; then the target's rendered `schema-poc` Job runs — the
//! Postgres image's shell, `pg_dump` and `psql` from this machine, with the Job's env, Secret
//! files, modes and user — and reaches the source by the cross-cluster name the control plane
//! gives it, verified (`verify-full`) with the source's CA.

mod fixtures;
mod kubelet;

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
    let mut cell = fixtures::cell(
        Tier::Small,
        DatabaseEngine::InCluster,
        SearchEngine::Embedded,
    );
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

    // The source's schema, made by poc as it migrates: a table with a sequence, a constraint,
    // an index and rows (which the schema copy leaves to the subscription).
    let src = sqlx::PgPool::connect(&a.localize(&url, None))
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

    let mut b = tokio::task::spawn_blocking(move || {
        b.start("Job", "schema-poc");
        b
    })
    .await
    .expect("the schema Job succeeds");
    let dst = sqlx::PgPool::connect(&b.localize(&url, None))
        .await
        .expect("poc on the target");
    let tables: Vec<(String,)> =
        sqlx::query_as("SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'")
            .fetch_all(&dst)
            .await
            .expect("tables");
    assert_eq!(tables, [("pocs".to_owned(),)]);
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM pocs")
        .fetch_one(&dst)
        .await
        .expect("rows");
    assert_eq!(
        rows, 0,
        "the schema only: rows come through the subscription"
    );
    let (indexes,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM pg_indexes WHERE tablename = 'pocs'")
            .fetch_one(&dst)
            .await
            .expect("indexes");
    assert_eq!(indexes, 3, "primary key, unique name, tags");
    let (owner,): (String,) =
        sqlx::query_as("SELECT tableowner::text FROM pg_tables WHERE tablename = 'pocs'")
            .fetch_one(&dst)
            .await
            .expect("owner");
    assert_eq!(owner, "poc", "restored as the service's own role");

    // A Job that runs again (a retried pod) finds the schema there and changes nothing.
    let b = tokio::task::spawn_blocking(move || {
        b.start("Job", "schema-poc");
        b
    })
    .await
    .expect("the schema Job succeeds again");
    drop((a, b));
}
