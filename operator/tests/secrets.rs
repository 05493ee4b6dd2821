//! Per-cell Secrets: what `render` mounts exists, values are fresh per cell and per service,
//! the key pair is a pair, and the objects validate against the Kubernetes schemas.

use cell_model::{
    Cell, CellSpec, DatabaseEngine, DatabaseSpec, SearchEngine, ServiceReplicas, Tier,
};
use cell_operator::secrets::{GENERATED_ONCE, generate};

fn cell(engine: DatabaseEngine, search: SearchEngine) -> Cell {
    Cell::new(
        "c-acme-1234",
        CellSpec {
            cell_id: "c-acme-1234".into(),
            tenant: "acme".into(),
            tier: Tier::Standard,
            version: "1.4.2".into(),
            replicas: ServiceReplicas::default(),
            database: DatabaseSpec {
                engine,
                class: None,
                storage_gib: 100,
                multi_az: true,
            },
            search,
            placement: "eks-sa-east-1".into(),
            suspended: false,
            email_domains: Vec::new(),
            bootstrap: None,
            migration: None,
            restore: None,
        },
    )
}

fn data<'a>(secrets: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    &secrets
        .iter()
        .find(|s| s["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("secret {name}"))["stringData"]
}

#[test]
fn an_in_cluster_cell_gets_every_secret_its_pods_mount_with_fresh_values() {
    let c = cell(DatabaseEngine::InCluster, SearchEngine::Meilisearch);
    let secrets = generate(&c).expect("secrets");
    let names: Vec<&str> = secrets
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "cell-jwt",
            "cell-service-token",
            "media-url-key",
            "meilisearch",
            "postgres-tls",
            "poc-database",
            "poc-role",
            "dojo-database",
            "dojo-role",
            "media-database",
            "media-role"
        ]
    );
    assert_eq!(
        names,
        cell_operator::secrets::names(&c),
        "names() lists what generate() makes"
    );
    for s in &secrets {
        assert_eq!(s["metadata"]["annotations"][GENERATED_ONCE], "true");
        assert_eq!(s["metadata"]["namespace"], "cell-acme");
    }
    let jwt = data(&secrets, "cell-jwt");
    let private = secrecy::SecretString::from(jwt["private.pem"].as_str().expect("pem").to_owned());
    assert_eq!(
        service_kit::jwt::public_pem_from_private(&private).expect("a valid private key"),
        jwt["public.pem"].as_str().expect("public"),
        "the public key is the private key's"
    );
    let urls: Vec<&str> = cell_model::contract::Service::ALL
        .map(cell_model::contract::Service::name)
        .iter()
        .map(|s| {
            data(&secrets, &format!("{s}-database"))["url"]
                .as_str()
                .expect("url")
        })
        .collect();
    assert!(urls[0].starts_with("postgres://poc:"));
    assert!(urls[0].ends_with("@postgres-rw.cell-acme.svc:5432/poc"));
    assert_ne!(
        urls[0].split('@').next(),
        urls[1].split('@').next(),
        "one password per role"
    );

    let again = generate(&c).expect("secrets");
    assert_ne!(
        data(&secrets, "cell-service-token")["token"],
        data(&again, "cell-service-token")["token"],
        "values are random: generating twice is never how a cell is reconciled"
    );

    let path = std::env::temp_dir().join(format!("cell-secrets-{}.yaml", std::process::id()));
    let yaml = secrets
        .iter()
        .map(|s| serde_norway::to_string(s).expect("yaml"))
        .collect::<Vec<_>>()
        .join("---\n");
    std::fs::write(&path, yaml).expect("write");
    let validate = std::env::var("MRBILL_KUBERNETES_VALIDATE")
        .unwrap_or_else(|_| "kubernetes-validate".into());
    let out = std::process::Command::new(&validate)
        .arg("--strict")
        .arg(&path)
        .output()
        .unwrap_or_else(|e| panic!("{validate} not found: run ./x test (it installs it): {e}"));
    let _ = std::fs::remove_file(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn an_rds_cell_with_embedded_search_gets_no_postgres_or_meilisearch_secrets() {
    let secrets = generate(&cell(DatabaseEngine::Rds, SearchEngine::Embedded)).expect("secrets");
    let names: Vec<&str> = secrets
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str())
        .collect();
    assert_eq!(names, ["cell-jwt", "cell-service-token", "media-url-key"]);
    assert_eq!(
        names,
        cell_operator::secrets::names(&cell(DatabaseEngine::Rds, SearchEngine::Embedded))
    );
}

/// An rds cell's Secrets are the services' own database URLs (TLS required) and nothing of
/// the master user's: only the operator holds that.
#[test]
fn rds_names_lists_what_rds_makes_and_none_holds_the_master() {
    let c = cell(DatabaseEngine::Rds, SearchEngine::Embedded);
    let secrets = cell_operator::secrets::rds(&c, "db.example", 5432);
    let made: Vec<String> = secrets
        .iter()
        .filter_map(|s| s["metadata"]["name"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(made, cell_operator::secrets::rds_names());
    assert_eq!(made, ["poc-database", "dojo-database", "media-database"]);
    for secret in &secrets {
        let data = secret["stringData"].as_object().expect("stringData");
        assert_eq!(data.keys().collect::<Vec<_>>(), ["url"], "{secret}");
        let url = data["url"].as_str().expect("url");
        let name = secret["metadata"]["name"].as_str().expect("name");
        let role = name.strip_suffix("-database").expect("service");
        assert!(
            url.starts_with(&format!("postgres://{role}:"))
                && url.ends_with(&format!("@db.example:5432/{role}?sslmode=require")),
            "{url}"
        );
    }
}
