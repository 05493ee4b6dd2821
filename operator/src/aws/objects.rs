//! An `rds` cell's artifacts (reports, videos) when it moves: the target's operator copies
//! the source's bucket into its own, server side (CopyObject, each object encrypted by the
//! target bucket's default key), before the fence and once more after it, exactly (what the
//! source no longer has is deleted); the move's checks then compare both buckets' keys and
//! sizes.
//!
//! An object is copied when the target lacks it, holds another size, or holds an older one
//! (ETags of SSE-KMS objects are not comparable between buckets).

use std::collections::BTreeMap;

use super::aws_error;
use crate::error::Error;

/// A bucket and its region.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub name: String,
    pub region: String,
}

/// Per object: its size and when it was written (seconds since the epoch).
type Manifest = BTreeMap<String, (i64, i64)>;

/// S3 in any region, from one SDK configuration.
#[derive(Clone, Debug)]
pub struct Objects {
    sdk: aws_config::SdkConfig,
}

impl Objects {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self { sdk: sdk.clone() }
    }

    fn client(&self, region: &str) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::config::Builder::from(&self.sdk)
            .region(aws_sdk_s3::config::Region::new(region.to_owned()))
            // An endpoint of its own (tests: moto) takes buckets in the path.
            .force_path_style(self.sdk.endpoint_url().is_some())
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    async fn manifest(&self, bucket: &Bucket) -> Result<Manifest, Error> {
        let s3 = self.client(&bucket.region);
        let mut out = Manifest::new();
        let mut token = None;
        loop {
            let page = s3
                .list_objects_v2()
                .bucket(&bucket.name)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| aws_error(format!("listing bucket {}", bucket.name), e))?;
            for object in page.contents() {
                if let Some(key) = object.key() {
                    let written = object.last_modified().map_or(0, |t| t.secs());
                    out.insert(key.to_owned(), (object.size().unwrap_or(0), written));
                }
            }
            match page.next_continuation_token() {
                Some(next) => token = Some(next.to_owned()),
                None => return Ok(out),
            }
        }
    }

    /// Copies what `to` lacks or holds older of `from`; with `exact`, deletes from `to` what
    /// `from` does not hold. Returns how many objects `from` holds.
    pub async fn sync(&self, from: &Bucket, to: &Bucket, exact: bool) -> Result<usize, Error> {
        let (source, target) = (self.manifest(from).await?, self.manifest(to).await?);
        let s3 = self.client(&to.region);
        for (key, (size, written)) in &source {
            let current = target
                .get(key)
                .is_some_and(|(s, w)| s == size && w >= written);
            if current {
                continue;
            }
            s3.copy_object()
                .bucket(&to.name)
                .key(key)
                .copy_source(format!("{}/{}", from.name, encode(key)))
                .send()
                .await
                .map_err(|e| aws_error(format!("copying {key} to {}", to.name), e))?;
        }
        if exact {
            for key in target.keys().filter(|k| !source.contains_key(*k)) {
                s3.delete_object()
                    .bucket(&to.name)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| aws_error(format!("deleting {key} from {}", to.name), e))?;
            }
        }
        Ok(source.len())
    }

    /// The keys whose presence or size differ between the buckets (none: the same objects).
    pub async fn differing(&self, from: &Bucket, to: &Bucket) -> Result<Vec<String>, Error> {
        let (source, target) = (self.manifest(from).await?, self.manifest(to).await?);
        let mut keys: Vec<String> = source
            .iter()
            .filter(|(k, (size, _))| target.get(*k).is_none_or(|(s, _)| s != size))
            .map(|(k, _)| k.clone())
            .collect();
        keys.extend(target.keys().filter(|k| !source.contains_key(*k)).cloned());
        Ok(keys)
    }
}

/// A key as a copy source names it (URL-encoded, `/` kept).
fn encode(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for byte in key.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' => {
                out.push(char::from(byte));
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_sources_are_encoded_but_keep_their_path() {
        assert_eq!(
            super::encode("tenants/acme/reports/a b+c.csv"),
            "tenants/acme/reports/a%20b%2Bc.csv"
        );
    }
}
