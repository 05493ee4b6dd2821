//! A move between two `rds` cells' instances as their operators make it
//! (`cell_operator::roles::replication`, the SQL of `pg_move`), between two real Postgres
//! standing in for RDS (TLS only, see `rds/mod.rs`): the source publishes, the schema is
//! copied as the schema Job copies it, the target subscribes as the migrator, the move's checks
//! (`PgMoves`) find it caught up and in sync, and both sides remove their part.
//!
//! Plain Postgres 15 lets only superusers subscribe and make replication roles, which RDS
//! lets its master do (`rds_superuser`): the stand-ins' masters are superusers here. The
//! services' roles are made by the operator's own role maker, with different passwords on
//! each side, as two instances have.

use std::time::{Duration, Instant};

use cell_operator::moves::{MoveChecks, PgMoves, Side};
use cell_operator::roles::{DatabaseAdmin, Postgres, Replication, Role};
use sqlx::PgPool;

mod rds;
use rds::RdsInstance;

const SERVICES: [&str; 3] = ["poc", "dojo", "media"];

fn roles(prefix: &str) -> Vec<Role> {
    SERVICES
        .map(|service| Role {
            name: service.to_owned(),
            password: format!("{prefix}{}", service_kit::secrets::random_token(16)).into(),
        })
        .into()
}

fn url(instance: &RdsInstance, role: &str, password: &str, db: &str) -> String {
    format!(
        "postgres://{role}:{password}@127.0.0.1:{}/{db}?sslmode=require",
        instance.port()
    )
}

fn password(roles: &[Role], service: &str) -> String {
    use secrecy::ExposeSecret;
    let role = roles.iter().find(|r| r.name == service).expect("a role");
    role.password.expose_secret().to_owned()
}

async fn exec(db: &PgPool, sql: &str) {
    sqlx::raw_sql(sql).execute(db).await.expect(sql);
}

async fn scalar(db: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(db).await.expect(sql)
}

#[tokio::test]
async fn an_rds_cell_replicates_to_its_target_and_both_sides_clean_up() {
    let (a, b) = tokio::join!(
        RdsInstance::start_for_moves(),
        RdsInstance::start_for_moves()
    );
    let (roles_a, roles_b) = (roles("a"), roles("b"));
    let (at_a, at_b) = (a.server(), b.server());
    Postgres
        .ensure_roles(&at_a, &a.master, &roles_a)
        .await
        .expect("the source's roles");
    Postgres
        .ensure_roles(&at_b, &b.master, &roles_b)
        .await
        .expect("the target's roles");
    // The source's tables, as each service's migrations make them (one without a key).
    let mut sources = Vec::new();
    for service in SERVICES {
        let db = PgPool::connect(&url(&a, service, &password(&roles_a, service), service))
            .await
            .expect("as the service");
        exec(
            &db,
            "CREATE TABLE items (id bigserial PRIMARY KEY, name text NOT NULL);
             CREATE TABLE tags (item bigint, tag text);
             INSERT INTO items (name) SELECT 'item ' || n FROM generate_series(1, 200) n;
             INSERT INTO tags SELECT n, 'tag' FROM generate_series(1, 50) n;",
        )
        .await;
        sources.push(db);
    }

    let migrator = Role {
        name: "migrator".into(),
        password: service_kit::secrets::random_token(24).into(),
    };
    let databases = SERVICES;
    for _ in 0..2 {
        let publish = Replication::Publish {
            migrator: &migrator,
        };
        Postgres
            .replicate(&at_a, &a.master, &databases, publish)
            .await
            .expect("published (and again: nothing changes)");
    }
    let migrator_password = {
        use secrecy::ExposeSecret;
        migrator.password.expose_secret().to_owned()
    };
    for service in SERVICES {
        rds::copy_schema(
            &url(&a, "migrator", &migrator_password, service),
            &url(&b, service, &password(&roles_b, service), service),
        );
    }
    let subscribe = Replication::Subscribe {
        source: &at_a,
        migrator: &migrator,
    };
    Postgres
        .replicate(&at_b, &b.master, &databases, subscribe)
        .await
        .expect("subscribed");

    let side = |instance: &RdsInstance, role: &str, password: &str, service: &str| Side {
        url: url(instance, role, password, service),
        ca: None,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    for service in SERVICES {
        let target = side(&b, service, &password(&roles_b, service), service);
        let slot = format!("mrbill_move_{service}");
        while PgMoves.copying(&target, &slot).await != Ok(0) {
            assert!(Instant::now() < deadline, "{service} never caught up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Writes after the initial copy stream over; then the source stops (the fence).
    for db in &sources {
        exec(
            db,
            "INSERT INTO items (name) SELECT 'late ' || n FROM generate_series(1, 20) n;
             UPDATE items SET name = 'renamed' WHERE id = 3;
             DELETE FROM items WHERE id = 4;
             UPDATE tags SET tag = 'changed' WHERE item = 5;
             DELETE FROM tags WHERE item = 6;",
        )
        .await;
    }
    for service in SERVICES {
        let source = side(&a, "migrator", &migrator_password, service);
        let target = side(&b, service, &password(&roles_b, service), service);
        let tables = loop {
            match PgMoves.sync(&source, &target).await {
                Ok(tables) => break tables,
                Err(why) if Instant::now() < deadline => {
                    assert!(why.contains("differs"), "{service}: {why}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(why) => panic!("{service} never in sync: {why}"),
            }
        };
        assert_eq!(tables, 2, "{service}");
        assert_eq!(PgMoves.verify(&source, &target).await, Ok(2));
    }
    // The target continues the source's sequences.
    let poc_b = PgPool::connect(&url(&b, "poc", &password(&roles_b, "poc"), "poc"))
        .await
        .expect("the target as poc");
    let next = scalar(&poc_b, "SELECT nextval('items_id_seq')").await;
    assert!(
        next > scalar(&sources[0], "SELECT max(id) FROM items").await,
        "{next}"
    );

    // The target starts: its subscriptions go; the source's part goes after.
    let unsubscribe = Replication::Unsubscribe;
    Postgres
        .replicate(&at_b, &b.master, &databases, unsubscribe)
        .await
        .expect("unsubscribed");
    for _ in 0..2 {
        Postgres
            .replicate(&at_a, &a.master, &databases, Replication::Unpublish)
            .await
            .expect("unpublished (and again: nothing left)");
    }
    let master_a = PgPool::connect(&a.master_url()).await.expect("master");
    assert_eq!(
        scalar(&master_a, "SELECT count(*) FROM pg_replication_slots").await,
        0
    );
    assert_eq!(
        scalar(
            &master_a,
            "SELECT count(*) FROM pg_roles WHERE rolname = 'migrator'"
        )
        .await,
        0
    );
    for db in &sources {
        assert_eq!(scalar(db, "SELECT count(*) FROM pg_publication").await, 0);
    }
    assert_eq!(
        scalar(&poc_b, "SELECT count(*) FROM pg_subscription").await,
        0
    );
    assert_eq!(scalar(&poc_b, "SELECT count(*) FROM items").await, 219);
}

/// A source whose Postgres does not write logical WAL (an RDS instance without
/// `rds.logical_replication`) is refused with a reason, not half published.
#[tokio::test]
async fn a_source_without_logical_wal_says_so() {
    let mut a = RdsInstance::start_for_moves().await;
    let master = PgPool::connect(&a.master_url()).await.expect("master");
    exec(&master, "ALTER SYSTEM SET wal_level = 'replica'").await;
    master.close().await;
    a.restart();
    let roles = roles("a");
    Postgres
        .ensure_roles(&a.server(), &a.master, &roles)
        .await
        .expect("roles");
    let migrator = Role {
        name: "migrator".into(),
        password: "pw".to_owned().into(),
    };
    let publish = Replication::Publish {
        migrator: &migrator,
    };
    let why = Postgres
        .replicate(&a.server(), &a.master, &SERVICES, publish)
        .await
        .expect_err("refused");
    assert!(format!("{why:#}").contains("wal_level=replica"), "{why:#}");
}
