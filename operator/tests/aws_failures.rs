//! What moto cannot produce — a stack rolled back with failure events, instances that are still
//! creating or modifying, access denied, throttling — with scripted replies: a small HTTP
//! endpoint that answers each AWS query-protocol `Action` with the XML a test gives it, so the
//! real SDK clients (parsing, error codes, retries) are exercised. (`aws-smithy-mocks` would
//! do the same in-process, but its test feature turns on serde_json's `preserve_order` for the
//! whole workspace build.) Each case ends in a clear state or error code, a bounded retry, and
//! nothing orphaned.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_cloudformation::config::{Credentials, SharedCredentialsProvider};
use cell_model::{
    Cell, CellSpec, DatabaseEngine, DatabaseSpec, SearchEngine, ServiceReplicas, Tier,
};
use cell_operator::aws::{
    AwsSettings, Foundation, InstanceState, MasterCredentials, Rds, StackState,
};
use cell_operator::error::Error;

/// Replies per `Action`, in order; the last one repeats. Counts calls per action.
#[derive(Default)]
struct Script {
    replies: Mutex<HashMap<String, Vec<(u16, String)>>>,
    calls: Mutex<HashMap<String, usize>>,
}

impl Script {
    fn reply(&self, action: &str, status: u16, body: impl Into<String>) -> &Self {
        self.replies
            .lock()
            .expect("script")
            .entry(action.to_owned())
            .or_default()
            .push((status, body.into()));
        self
    }

    fn calls(&self, action: &str) -> usize {
        self.calls
            .lock()
            .expect("calls")
            .get(action)
            .copied()
            .unwrap_or(0)
    }

    fn answer(&self, action: &str) -> (u16, String) {
        let n = {
            let mut calls = self.calls.lock().expect("calls");
            let n = calls.entry(action.to_owned()).or_default();
            *n += 1;
            *n
        };
        let replies = self.replies.lock().expect("script");
        match replies.get(action) {
            Some(list) if !list.is_empty() => list[(n - 1).min(list.len() - 1)].clone(),
            _ => (
                500,
                format!(
                    "<Error><Code>Unscripted</Code><Message>no reply for {action}</Message></Error>"
                ),
            ),
        }
    }
}

/// Serves `script`; an SDK config pointing at it (3 attempts, 1 ms backoff).
async fn endpoint(script: Arc<Script>) -> (SdkConfig, tokio::task::JoinHandle<()>) {
    let app = axum::Router::new().fallback(move |body: String| {
        let script = script.clone();
        async move {
            let action = body
                .split('&')
                .find_map(|kv| kv.strip_prefix("Action="))
                .unwrap_or_default()
                .to_owned();
            let (status, xml) = script.answer(&action);
            (
                http::StatusCode::from_u16(status).expect("status"),
                [(http::header::CONTENT_TYPE, "text/xml")],
                xml,
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let sdk = SdkConfig::builder()
        .endpoint_url(url)
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "t", "t", None, None, "script",
        )))
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(1)),
        )
        .behavior_version(BehaviorVersion::latest())
        .build();
    (sdk, task)
}

const CFN: &str = "http://cloudformation.amazonaws.com/doc/2010-05-15/";
const RDS: &str = "http://rds.amazonaws.com/doc/2014-10-31/";

fn cfn_ok(action: &str, result: &str) -> String {
    format!(
        "<{action}Response xmlns=\"{CFN}\"><{action}Result>{result}</{action}Result><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></{action}Response>"
    )
}

fn cfn_error(code: &str, message: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"{CFN}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>r</RequestId></ErrorResponse>"
    )
}

fn stack(status: &str) -> String {
    cfn_ok(
        "DescribeStacks",
        &format!(
            "<Stacks><member><StackName>mrbill-c-acme-1234</StackName><StackId>id</StackId><CreationTime>2026-11-22T10:00:00Z</CreationTime><StackStatus>{status}</StackStatus></member></Stacks>"
        ),
    )
}

fn event(logical: &str, status: &str, reason: &str) -> String {
    format!(
        "<member><StackId>id</StackId><EventId>{logical}-{status}</EventId><StackName>mrbill-c-acme-1234</StackName><LogicalResourceId>{logical}</LogicalResourceId><ResourceStatus>{status}</ResourceStatus><ResourceStatusReason>{reason}</ResourceStatusReason><Timestamp>2026-11-22T10:00:00Z</Timestamp></member>"
    )
}

fn instance(status: &str) -> String {
    format!(
        "<DescribeDBInstancesResponse xmlns=\"{RDS}\"><DescribeDBInstancesResult><DBInstances><DBInstance><DBInstanceIdentifier>mrbill-c-acme-1234</DBInstanceIdentifier><DBInstanceStatus>{status}</DBInstanceStatus><DBInstanceClass>db.t4g.small</DBInstanceClass><AllocatedStorage>20</AllocatedStorage><DeletionProtection>true</DeletionProtection></DBInstance></DBInstances></DescribeDBInstancesResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DescribeDBInstancesResponse>"
    )
}

fn cell() -> Cell {
    Cell::new(
        "c-acme-1234",
        CellSpec {
            cell_id: "c-acme-1234".into(),
            tenant: "acme".into(),
            tier: Tier::Standard,
            version: "1.4.2".into(),
            replicas: ServiceReplicas::default(),
            database: DatabaseSpec {
                engine: DatabaseEngine::Rds,
                class: None,
                storage_gib: 100,
                multi_az: true,
            },
            search: SearchEngine::Meilisearch,
            placement: "eks".into(),
            suspended: false,
            email_domains: Vec::new(),
            bootstrap: None,
            migration: None,
            restore: None,
        },
    )
}

fn settings() -> AwsSettings {
    AwsSettings {
        vpc_id: "vpc-1".into(),
        subnet_ids: vec!["subnet-a".into(), "subnet-b".into()],
        cluster_security_group_id: "sg-cluster".into(),
        oidc_provider_arn: "arn:aws:iam::123456789012:oidc-provider/oidc.example/id/X".into(),
        oidc_provider_host: "oidc.example/id/X".into(),
    }
}

#[tokio::test]
async fn a_rolled_back_stack_reports_its_first_failure_and_is_cleared_for_a_new_attempt() {
    let script = Arc::new(Script::default());
    script.reply("DescribeStacks", 200, stack("ROLLBACK_COMPLETE"));
    // Newest first, as CloudFormation lists them: the bucket was cancelled because the key failed.
    script.reply(
        "DescribeStackEvents",
        200,
        cfn_ok(
            "DescribeStackEvents",
            &format!(
                "<StackEvents>{}{}{}</StackEvents>",
                event("mrbill-c-acme-1234", "ROLLBACK_COMPLETE", "rolled back"),
                event("Bucket", "CREATE_FAILED", "Resource creation cancelled"),
                event(
                    "Key",
                    "CREATE_FAILED",
                    "User is not authorized to perform kms:CreateKey"
                ),
            ),
        ),
    );
    script.reply("DeleteStack", 200, format!("<DeleteStackResponse xmlns=\"{CFN}\"><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></DeleteStackResponse>"));
    let (sdk, _server) = endpoint(script.clone()).await;
    let foundation = Foundation::new(&sdk, settings());

    match foundation
        .ensure(&cell())
        .await
        .expect("a failed stack is a state, not an error")
    {
        StackState::Failed { status, reason } => {
            assert_eq!(status, "ROLLBACK_COMPLETE");
            assert_eq!(
                reason, "Key: User is not authorized to perform kms:CreateKey",
                "the cause, not its consequences"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        script.calls("DeleteStack"),
        1,
        "the rolled-back stack is removed: nothing left half made"
    );
    assert_eq!(
        script.calls("CreateStack"),
        0,
        "the new attempt is the next reconcile's, after backoff"
    );
}

#[tokio::test]
async fn a_stack_in_progress_is_waited_for_without_writes() {
    let script = Arc::new(Script::default());
    script.reply("DescribeStacks", 200, stack("UPDATE_IN_PROGRESS"));
    let (sdk, _server) = endpoint(script.clone()).await;
    let foundation = Foundation::new(&sdk, settings());
    assert_eq!(
        foundation.ensure(&cell()).await.expect("ensure"),
        StackState::InProgress("UPDATE_IN_PROGRESS".into())
    );
    assert_eq!(script.calls("CreateStack") + script.calls("UpdateStack"), 0);
}

#[tokio::test]
async fn access_denied_is_an_error_carrying_the_aws_code() {
    let script = Arc::new(Script::default());
    script
        .reply(
            "DescribeStacks",
            400,
            cfn_error(
                "ValidationError",
                "Stack with id mrbill-c-acme-1234 does not exist",
            ),
        )
        .reply(
            "CreateStack",
            403,
            cfn_error(
                "AccessDenied",
                "User is not authorized to perform cloudformation:CreateStack",
            ),
        );
    let (sdk, _server) = endpoint(script.clone()).await;
    let foundation = Foundation::new(&sdk, settings());
    let err = foundation.ensure(&cell()).await.expect_err("denied");
    assert_eq!(err.reason(), "AccessDenied");
    assert!(
        err.to_string()
            .contains("creating stack mrbill-c-acme-1234"),
        "{err}"
    );
    assert!(matches!(err, Error::Aws { .. }));
    assert_eq!(
        script.calls("CreateStack"),
        1,
        "a denial is not retried by the SDK"
    );
}

#[tokio::test]
async fn throttling_is_retried_a_bounded_number_of_times_then_reported() {
    let script = Arc::new(Script::default());
    script.reply(
        "DescribeStacks",
        400,
        cfn_error("Throttling", "Rate exceeded"),
    );
    let (sdk, _server) = endpoint(script.clone()).await;
    let foundation = Foundation::new(&sdk, settings());
    let err = foundation.observe(&cell()).await.expect_err("throttled");
    assert_eq!(err.reason(), "Throttling");
    assert_eq!(
        script.calls("DescribeStacks"),
        3,
        "the SDK's bounded retries, then the controller's backoff"
    );

    // Throttled twice, then answered: the SDK's retries absorb it.
    let script = Arc::new(Script::default());
    script
        .reply(
            "DescribeStacks",
            400,
            cfn_error("Throttling", "Rate exceeded"),
        )
        .reply(
            "DescribeStacks",
            400,
            cfn_error("Throttling", "Rate exceeded"),
        )
        .reply("DescribeStacks", 200, stack("CREATE_IN_PROGRESS"));
    let (sdk, _server) = endpoint(script.clone()).await;
    let foundation = Foundation::new(&sdk, settings());
    assert_eq!(
        foundation.observe(&cell()).await.expect("third time"),
        StackState::InProgress("CREATE_IN_PROGRESS".into())
    );
}

#[tokio::test]
async fn instances_creating_or_modifying_are_in_progress_and_left_alone() {
    let master = MasterCredentials {
        username: "mrbill".into(),
        password: secrecy::SecretString::from("p".repeat(20)),
    };
    for status in ["creating", "modifying", "backing-up"] {
        let script = Arc::new(Script::default());
        script.reply("DescribeDBInstances", 200, instance(status));
        let (sdk, _server) = endpoint(script.clone()).await;
        let rds = Rds::new(&sdk);
        let state = rds
            .ensure(&cell(), &BTreeMap::new(), &master)
            .await
            .expect("ensure");
        assert_eq!(state, InstanceState::InProgress(status.into()));
        assert_eq!(
            script.calls("CreateDBInstance") + script.calls("ModifyDBInstance"),
            0,
            "{status}: no writes while it works"
        );
    }
    let script = Arc::new(Script::default());
    script.reply(
        "DescribeDBInstances",
        200,
        instance("incompatible-parameters"),
    );
    let (sdk, _server) = endpoint(script.clone()).await;
    assert_eq!(
        Rds::new(&sdk).observe(&cell()).await.expect("observe"),
        InstanceState::Failed("incompatible-parameters".into())
    );
}

#[tokio::test]
async fn an_instance_already_deleting_is_waited_for() {
    let script = Arc::new(Script::default());
    script.reply("DescribeDBInstances", 200, instance("deleting"));
    let (sdk, _server) = endpoint(script.clone()).await;
    assert_eq!(
        Rds::new(&sdk)
            .delete(&cell(), "final")
            .await
            .expect("delete"),
        None
    );
    assert_eq!(script.calls("DeleteDBInstance"), 0);
}
