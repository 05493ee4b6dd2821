//! A cell's artifacts (reports, videos) when it moves: the target's operator copies the
//! source's bucket into its own before the fence and once more after it, exactly (what the
//! source no longer has is deleted); the move's checks then compare both buckets' keys and
//! sizes.
//!
//! Two kinds of bucket: an `rds` cell's in AWS S3 (reached with the operator's own AWS
//! credentials, copied server side with CopyObject, each object encrypted by the target
//! bucket's default key), and an in-cluster cell's claimed from an S3-compatible store (reached
//! at its endpoint with that bucket's own key — one key per bucket, so objects are read from
//! one and written to the other: in one request up to [`PART`], in parts of that size above).
//!
//! An object is copied when the target lacks it, holds another size, or holds an older one
//! (ETags of SSE-KMS or multipart objects are not comparable between buckets).

use std::collections::BTreeMap;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};

use super::aws_error;
use crate::error::Error;

/// Objects larger than this are written in parts of this size (S3's minimum part is 5 MiB).
const PART: usize = 8 << 20;

/// A bucket: its name, region, and — outside AWS — its store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub name: String,
    pub region: String,
    /// `None`: AWS S3 with the operator's credentials.
    pub store: Option<Store>,
}

/// An S3-compatible store's endpoint and a key for one bucket in it.
#[derive(Clone, PartialEq, Eq)]
pub struct Store {
    pub endpoint: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("endpoint", &self.endpoint)
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

/// Per object: its size and when it was written (seconds since the epoch).
type Manifest = BTreeMap<String, (i64, i64)>;

/// S3 in any region (with the operator's AWS configuration, when it has one) and
/// S3-compatible stores.
#[derive(Clone, Debug, Default)]
pub struct Objects {
    sdk: Option<aws_config::SdkConfig>,
}

impl Objects {
    pub fn new(sdk: &aws_config::SdkConfig) -> Self {
        Self {
            sdk: Some(sdk.clone()),
        }
    }

    fn client(&self, bucket: &Bucket) -> Result<aws_sdk_s3::Client, Error> {
        let region = aws_sdk_s3::config::Region::new(bucket.region.clone());
        let config = match (&bucket.store, &self.sdk) {
            (Some(store), _) => aws_sdk_s3::config::Builder::new()
                .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
                .region(region)
                .endpoint_url(&store.endpoint)
                .credentials_provider(aws_sdk_s3::config::Credentials::new(
                    &store.access_key_id,
                    &store.secret_access_key,
                    None,
                    None,
                    "bucket-key",
                ))
                .force_path_style(true)
                .build(),
            (None, Some(sdk)) => aws_sdk_s3::config::Builder::from(sdk)
                .region(region)
                // An endpoint of its own (tests: moto) takes buckets in the path.
                .force_path_style(sdk.endpoint_url().is_some())
                .build(),
            (None, None) => {
                return Err(Error::Render(format!(
                    "bucket {} is in AWS S3 but the operator has no AWS settings",
                    bucket.name
                )));
            }
        };
        Ok(aws_sdk_s3::Client::from_conf(config))
    }

    async fn manifest(s3: &aws_sdk_s3::Client, bucket: &Bucket) -> Result<Manifest, Error> {
        Self::manifest_under(s3, bucket, "").await
    }

    /// The objects under `prefix`, keyed without it.
    async fn manifest_under(
        s3: &aws_sdk_s3::Client,
        bucket: &Bucket,
        prefix: &str,
    ) -> Result<Manifest, Error> {
        let mut out = Manifest::new();
        let mut token = None;
        loop {
            let page = s3
                .list_objects_v2()
                .bucket(&bucket.name)
                .set_prefix((!prefix.is_empty()).then(|| prefix.to_owned()))
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| aws_error(format!("listing bucket {}", bucket.name), e))?;
            for object in page.contents() {
                if let Some(key) = object.key().and_then(|k| k.strip_prefix(prefix)) {
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
        self.sync_under((from, ""), (to, ""), exact).await
    }

    /// [`Objects::sync`] of what is under a prefix of `from` into a prefix of `to` (keys keep
    /// what follows the prefix; `""`: the whole bucket).
    pub async fn sync_under(
        &self,
        (from, from_prefix): (&Bucket, &str),
        (to, to_prefix): (&Bucket, &str),
        exact: bool,
    ) -> Result<usize, Error> {
        let (read, write) = (self.client(from)?, self.client(to)?);
        let source = Self::manifest_under(&read, from, from_prefix).await?;
        let target = Self::manifest_under(&write, to, to_prefix).await?;
        // Server side only where one identity reaches both buckets (the operator's, in AWS).
        let server_side = from.store.is_none() && to.store.is_none();
        for (key, (size, written)) in &source {
            let current = target
                .get(key)
                .is_some_and(|(s, w)| s == size && w >= written);
            if current {
                continue;
            }
            let (source_key, target_key) =
                (format!("{from_prefix}{key}"), format!("{to_prefix}{key}"));
            if server_side {
                write
                    .copy_object()
                    .bucket(&to.name)
                    .key(&target_key)
                    .copy_source(format!("{}/{}", from.name, encode(&source_key)))
                    .send()
                    .await
                    .map_err(|e| aws_error(format!("copying {key} to {}", to.name), e))?;
            } else {
                copy_through(&read, &write, (from, &source_key), (to, &target_key)).await?;
            }
        }
        if exact {
            for key in target.keys().filter(|k| !source.contains_key(*k)) {
                write
                    .delete_object()
                    .bucket(&to.name)
                    .key(format!("{to_prefix}{key}"))
                    .send()
                    .await
                    .map_err(|e| aws_error(format!("deleting {key} from {}", to.name), e))?;
            }
        }
        Ok(source.len())
    }

    /// The keys under `prefix` of `bucket`, without it.
    pub async fn keys_under(&self, bucket: &Bucket, prefix: &str) -> Result<Vec<String>, Error> {
        let s3 = self.client(bucket)?;
        Ok(Self::manifest_under(&s3, bucket, prefix)
            .await?
            .into_keys()
            .collect())
    }

    /// Object `key` of `bucket` as text (`None`: there is none).
    pub async fn read_text(&self, bucket: &Bucket, key: &str) -> Result<Option<String>, Error> {
        let s3 = self.client(bucket)?;
        let object = match s3.get_object().bucket(&bucket.name).key(key).send().await {
            Ok(object) => object,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(aws_error(format!("reading {key} from {}", bucket.name), e)),
        };
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| Error::Render(format!("reading {key} from {}: {e}", bucket.name)))?;
        Ok(Some(
            String::from_utf8_lossy(&bytes.into_bytes()).into_owned(),
        ))
    }

    /// Writes `text` as object `key` of `bucket`.
    pub async fn write_text(&self, bucket: &Bucket, key: &str, text: String) -> Result<(), Error> {
        self.client(bucket)?
            .put_object()
            .bucket(&bucket.name)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(text.into_bytes()))
            .send()
            .await
            .map_err(|e| aws_error(format!("writing {key} to {}", bucket.name), e))?;
        Ok(())
    }

    /// Deletes objects `keys` of `bucket`.
    pub async fn delete_keys(&self, bucket: &Bucket, keys: &[String]) -> Result<(), Error> {
        let s3 = self.client(bucket)?;
        for key in keys {
            s3.delete_object()
                .bucket(&bucket.name)
                .key(key)
                .send()
                .await
                .map_err(|e| aws_error(format!("deleting {key} from {}", bucket.name), e))?;
        }
        Ok(())
    }

    /// The keys whose presence or size differ between the buckets (none: the same objects).
    pub async fn differing(&self, from: &Bucket, to: &Bucket) -> Result<Vec<String>, Error> {
        let source = Self::manifest(&self.client(from)?, from).await?;
        let target = Self::manifest(&self.client(to)?, to).await?;
        let mut keys: Vec<String> = source
            .iter()
            .filter(|(k, (size, _))| target.get(*k).is_none_or(|(s, _)| s != size))
            .map(|(k, _)| k.clone())
            .collect();
        keys.extend(target.keys().filter(|k| !source.contains_key(*k)).cloned());
        Ok(keys)
    }
}

/// Reads `from_key` from `from` and writes it to `to` as `key`: in one request up to [`PART`], else as a
/// multipart upload of parts of about that size (one part in memory at a time; an upload
/// that fails is aborted, so the store keeps no orphaned parts).
async fn copy_through(
    read: &aws_sdk_s3::Client,
    write: &aws_sdk_s3::Client,
    (from, from_key): (&Bucket, &str),
    (to, key): (&Bucket, &str),
) -> Result<(), Error> {
    let reading = format!("reading {from_key} from {}", from.name);
    let writing = || format!("writing {key} to {}", to.name);
    let object = read
        .get_object()
        .bucket(&from.name)
        .key(from_key)
        .send()
        .await
        .map_err(|e| aws_error(reading.clone(), e))?;
    let content_type = object.content_type().map(str::to_owned);
    let mut body = object.body;
    let mut first = Vec::new();
    if !fill(&mut body, &mut first, &reading).await? {
        write
            .put_object()
            .bucket(&to.name)
            .key(key)
            .set_content_type(content_type)
            .body(ByteStream::from(first))
            .send()
            .await
            .map_err(|e| aws_error(writing(), e))?;
        return Ok(());
    }
    let started = write
        .create_multipart_upload()
        .bucket(&to.name)
        .key(key)
        .set_content_type(content_type)
        .send()
        .await
        .map_err(|e| aws_error(writing(), e))?;
    let id = started
        .upload_id()
        .ok_or_else(|| Error::Render(format!("{}: no upload id", writing())))?;
    let upload = Upload {
        s3: write,
        bucket: &to.name,
        key,
        id,
    };
    let parts = match upload.parts(first, &mut body, &reading).await {
        Ok(parts) => parts,
        Err(e) => {
            let _ = write
                .abort_multipart_upload()
                .bucket(&to.name)
                .key(key)
                .upload_id(id)
                .send()
                .await;
            return Err(e);
        }
    };
    write
        .complete_multipart_upload()
        .bucket(&to.name)
        .key(key)
        .upload_id(id)
        .multipart_upload(
            CompletedMultipartUpload::builder()
                .set_parts(Some(parts))
                .build(),
        )
        .send()
        .await
        .map_err(|e| aws_error(writing(), e))?;
    Ok(())
}

/// Appends `body`'s next chunks to `buf` until it holds [`PART`] bytes or the body ends;
/// whether more may follow.
async fn fill(body: &mut ByteStream, buf: &mut Vec<u8>, reading: &str) -> Result<bool, Error> {
    while buf.len() < PART {
        match body.try_next().await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk),
            Ok(None) => return Ok(false),
            Err(e) => return Err(Error::Render(format!("{reading}: {e}"))),
        }
    }
    Ok(true)
}

/// A started multipart upload.
struct Upload<'a> {
    s3: &'a aws_sdk_s3::Client,
    bucket: &'a str,
    key: &'a str,
    id: &'a str,
}

impl Upload<'_> {
    /// Uploads `first` and the rest of `body` as parts.
    async fn parts(
        &self,
        first: Vec<u8>,
        body: &mut ByteStream,
        reading: &str,
    ) -> Result<Vec<CompletedPart>, Error> {
        let mut parts = Vec::new();
        let mut buf = first;
        loop {
            let number = i32::try_from(parts.len() + 1)
                .map_err(|_| Error::Render(format!("{}: too many parts", self.key)))?;
            let sent = self
                .s3
                .upload_part()
                .bucket(self.bucket)
                .key(self.key)
                .upload_id(self.id)
                .part_number(number)
                .body(ByteStream::from(std::mem::take(&mut buf)))
                .send()
                .await
                .map_err(|e| aws_error(format!("writing {} to {}", self.key, self.bucket), e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(sent.e_tag().map(str::to_owned))
                    .build(),
            );
            // The next part (the last may be any size); nothing left: done.
            fill(body, &mut buf, reading).await?;
            if buf.is_empty() {
                return Ok(parts);
            }
        }
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
