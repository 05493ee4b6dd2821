//! A stand-in for an `ObjectBucketClaim` provisioner (Rook-Ceph's, NooBaa's — none runs here):
//! for each rendered claim, a bucket in an S3-compatible server (moto) named from the claim's
//! `generateBucketName` plus a random suffix, and what lib-bucket-provisioner leaves in the
//! claim's namespace, named like the claim: a ConfigMap with `BUCKET_HOST`, `BUCKET_PORT`,
//! `BUCKET_NAME`, `BUCKET_REGION`, `BUCKET_SUBREGION` and a Secret with `AWS_ACCESS_KEY_ID` and
//! `AWS_SECRET_ACCESS_KEY`. Pods reach the store at its in-cluster name, as a gateway Service
//! of another namespace (moto takes `*.svc.cluster.local` hosts as path-style, like RGW).
//!
//! What moto cannot show: a per-bucket key (it accepts any); the claim's rendered isolation is
//! checked on the rendered objects instead (one claim and one Secret per cell namespace).

use base64::Engine;
use serde_json::{Value, json};

use super::{Kubelet, str_of};

/// The store's gateway as pods address it.
pub const GATEWAY_HOST: &str = "rook-ceph-rgw-objects.rook-ceph.svc.cluster.local";
pub const GATEWAY_PORT: u16 = 80;

impl Kubelet {
    /// Fulfils every rendered claim with a bucket of the S3 server at `s3` (`http://127.0.0.1:<port>`).
    /// Returns the buckets' names, by claim. Before any pod starts (the pods' resolver then
    /// knows the gateway's name).
    pub fn provision_buckets(&mut self, s3: &str) -> Vec<(String, String)> {
        assert!(
            !self.root.join("hosts").exists(),
            "provision buckets before starting pods"
        );
        let local: u16 = s3
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the S3 server's port");
        self.services.insert(
            GATEWAY_HOST.to_owned(),
            std::collections::HashMap::from([(GATEWAY_PORT, local)]),
        );
        let claims: Vec<Value> = self
            .objects
            .iter()
            .filter(|o| o["kind"] == "ObjectBucketClaim")
            .cloned()
            .collect();
        let mut out = Vec::new();
        for claim in claims {
            let name = str_of(&claim["metadata"]["name"]).to_owned();
            let prefix = str_of(&claim["spec"]["generateBucketName"]);
            assert!(!prefix.is_empty(), "{name}: generateBucketName");
            assert!(
                claim["spec"]["storageClassName"].is_string(),
                "{name}: a bucket class"
            );
            let bucket = format!(
                "{prefix}-{}",
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            );
            let status = super::probe::http_put(&format!("{s3}/{bucket}")).expect("PUT bucket");
            assert_eq!(status, 200, "creating bucket {bucket}");
            let meta = json!({ "name": name, "namespace": self.namespace });
            let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
            self.objects.push(json!({
                "apiVersion": "v1", "kind": "ConfigMap", "metadata": meta,
                "data": {
                    "BUCKET_HOST": GATEWAY_HOST,
                    "BUCKET_PORT": GATEWAY_PORT.to_string(),
                    "BUCKET_NAME": bucket,
                    "BUCKET_REGION": "us-east-1",
                    "BUCKET_SUBREGION": "",
                },
            }));
            self.objects.push(json!({
                "apiVersion": "v1", "kind": "Secret", "metadata": meta,
                "data": {
                    "AWS_ACCESS_KEY_ID": b64(&format!("key-of-{bucket}")),
                    "AWS_SECRET_ACCESS_KEY": b64("testing"),
                },
            }));
            out.push((name, bucket));
        }
        out
    }
}
