//! The S3 providers: buckets (with their public access block, encryption, versioning and tags) and objects
//! (streamed from local files, hashed while streaming, never re-uploaded while unchanged).

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CompletedMultipartUpload, CompletedPart,
    CreateBucketConfiguration, Delete, ObjectIdentifier, PublicAccessBlockConfiguration, ServerSideEncryption,
    ServerSideEncryptionByDefault, ServerSideEncryptionConfiguration, ServerSideEncryptionRule, Tag, Tagging,
};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt;

use crate::attr::{Attr, Attrs};
use crate::aws::context::{
    AwsContext, Failure, all_tags, aws_error, bool_input, observed_tags, required, str_input, sub,
};
use crate::error::{Error, Result};
use crate::provider::{Observed, Provider, ReadRequest, StepContext};
use crate::state::ResourceState;

/// Files up to this size go up in one PUT; larger ones in parts of this size (or larger, see [`part_size`]).
/// Measured against moto (README, benchmark C): 6 MiB parts with 4 in memory match `aws s3 cp`'s throughput
/// (8 MiB parts, 10 at once) at under 64 MiB peak RSS.
const PART_SIZE: usize = 6 * 1024 * 1024;
/// S3's limit on the number of parts.
const MAX_PARTS: u64 = 10_000;
/// Parts in memory at once (being read, queued or uploading): memory stays below this many parts (24 MiB).
const PARTS_IN_MEMORY: usize = 4;

/// The part size for a file of `size` bytes: [`PART_SIZE`], or larger (whole MiB) when the file would
/// otherwise need more than S3's 10,000 parts.
fn part_size(size: u64) -> usize {
    let needed = size.div_ceil(MAX_PARTS).div_ceil(1 << 20) << 20;
    PART_SIZE.max(usize::try_from(needed).unwrap_or(usize::MAX))
}

/// Buckets (`aws_s3_bucket`).
#[derive(Debug)]
pub(crate) struct BucketProvider(pub(crate) Arc<AwsContext>);

/// Objects (`aws_s3_object`).
#[derive(Debug)]
pub(crate) struct ObjectProvider(pub(crate) Arc<AwsContext>);

fn s3_tags(tags: &[(String, String)]) -> Result<Vec<Tag>> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build().map_err(|e| Error::invalid(format!("tag {k:?}: {e}"))))
        .collect()
}

impl BucketProvider {
    async fn read_one(&self, request: &ReadRequest<'_>) -> Result<Option<Observed>> {
        let s3 = &self.0.s3;
        let address = request.address;
        let bucket = required(address, request.inputs, "bucket")?;
        if let Err(e) = s3.head_bucket().bucket(bucket).send().await {
            let failure = Failure::of(&e);
            if failure.is(&["NotFound", "NoSuchBucket"]) || e.raw_response().is_some_and(|r| r.status().as_u16() == 404)
            {
                return Ok(None);
            }
            return Err(failure.into_error(address, "HeadBucket"));
        }
        let (block, encryption, versioning, tags) = tokio::join!(
            s3.get_public_access_block().bucket(bucket).send(),
            s3.get_bucket_encryption().bucket(bucket).send(),
            s3.get_bucket_versioning().bucket(bucket).send(),
            s3.get_bucket_tagging().bucket(bucket).send(),
        );
        let block = match block {
            Ok(out) => out
                .public_access_block_configuration()
                .cloned()
                .unwrap_or_else(|| PublicAccessBlockConfiguration::builder().build()),
            Err(e) if Failure::of(&e).is(&["NoSuchPublicAccessBlockConfiguration"]) => {
                PublicAccessBlockConfiguration::builder().build()
            }
            Err(e) => return Err(Failure::of(&e).into_error(address, "GetPublicAccessBlock")),
        };
        let encryption = match encryption {
            Ok(out) => {
                let default = out
                    .server_side_encryption_configuration()
                    .and_then(|c| c.rules().first())
                    .and_then(|r| r.apply_server_side_encryption_by_default());
                Attr::Map(
                    [
                        (
                            "sse_algorithm".to_owned(),
                            default.map_or(Attr::Null, |d| Attr::str(d.sse_algorithm().as_str())),
                        ),
                        (
                            "kms_key_id".to_owned(),
                            default.and_then(|d| d.kms_master_key_id()).map_or(Attr::Null, Attr::str),
                        ),
                    ]
                    .into_iter()
                    .filter(|(k, v)| k != "kms_key_id" || *v != Attr::Null || has_kms_key(request.inputs))
                    .collect(),
                )
            }
            Err(e) if Failure::of(&e).is(&["ServerSideEncryptionConfigurationNotFoundError"]) => Attr::Null,
            Err(e) => return Err(Failure::of(&e).into_error(address, "GetBucketEncryption")),
        };
        let versioning = versioning
            .map_err(aws_error(address, "GetBucketVersioning"))?
            .status()
            .is_some_and(|s| *s == BucketVersioningStatus::Enabled);
        let tags = match tags {
            Ok(out) => observed_tags(out.tag_set().iter().map(|t| (t.key(), t.value()))),
            Err(e) if Failure::of(&e).is(&["NoSuchTagSet"]) => Attr::Map(Default::default()),
            Err(e) => return Err(Failure::of(&e).into_error(address, "GetBucketTagging")),
        };
        let flag = |v: Option<bool>| Attr::Bool(v.unwrap_or(false));
        let inputs = Attrs::from([
            ("bucket".into(), Attr::str(bucket)),
            ("encryption".into(), encryption),
            // Not an AWS setting: what destroy may do. Kept as configured.
            ("force_destroy".into(), request.inputs.get("force_destroy").cloned().unwrap_or(Attr::Bool(false))),
            (
                "public_access_block".into(),
                Attr::Map(
                    [
                        ("block_public_acls".to_owned(), flag(block.block_public_acls())),
                        ("block_public_policy".to_owned(), flag(block.block_public_policy())),
                        ("ignore_public_acls".to_owned(), flag(block.ignore_public_acls())),
                        ("restrict_public_buckets".to_owned(), flag(block.restrict_public_buckets())),
                    ]
                    .into(),
                ),
            ),
            ("tags".into(), tags),
            ("versioning".into(), Attr::Bool(versioning)),
        ]);
        Ok(Some(Observed { inputs, outputs: bucket_outputs(bucket, self.0.region()) }))
    }

    async fn put_public_access_block(&self, ctx: &StepContext, bucket: &str, inputs: &Attrs) -> Result<()> {
        let flags = sub(inputs, "public_access_block");
        let get = |name: &str| flags.and_then(|m| m.get(name)).and_then(Attr::as_bool).unwrap_or(true);
        let config = PublicAccessBlockConfiguration::builder()
            .block_public_acls(get("block_public_acls"))
            .block_public_policy(get("block_public_policy"))
            .ignore_public_acls(get("ignore_public_acls"))
            .restrict_public_buckets(get("restrict_public_buckets"))
            .build();
        self.0
            .s3
            .put_public_access_block()
            .bucket(bucket)
            .public_access_block_configuration(config)
            .send()
            .await
            .map_err(aws_error(&ctx.address, "PutPublicAccessBlock"))?;
        Ok(())
    }

    async fn put_encryption(&self, ctx: &StepContext, bucket: &str, inputs: &Attrs) -> Result<()> {
        let enc = sub(inputs, "encryption");
        let algorithm = enc.and_then(|m| m.get("sse_algorithm")).and_then(Attr::as_str).unwrap_or("AES256");
        let key = enc.and_then(|m| m.get("kms_key_id")).and_then(Attr::as_str);
        let default = ServerSideEncryptionByDefault::builder()
            .sse_algorithm(ServerSideEncryption::from(algorithm))
            .set_kms_master_key_id(key.map(str::to_owned))
            .build()
            .map_err(|e| Error::provider(&ctx.address, e))?;
        let config = ServerSideEncryptionConfiguration::builder()
            .rules(ServerSideEncryptionRule::builder().apply_server_side_encryption_by_default(default).build())
            .build()
            .map_err(|e| Error::provider(&ctx.address, e))?;
        self.0
            .s3
            .put_bucket_encryption()
            .bucket(bucket)
            .server_side_encryption_configuration(config)
            .send()
            .await
            .map_err(aws_error(&ctx.address, "PutBucketEncryption"))?;
        Ok(())
    }

    async fn put_versioning(&self, ctx: &StepContext, bucket: &str, enabled: bool) -> Result<()> {
        let status = if enabled { BucketVersioningStatus::Enabled } else { BucketVersioningStatus::Suspended };
        self.0
            .s3
            .put_bucket_versioning()
            .bucket(bucket)
            .versioning_configuration(aws_sdk_s3::types::VersioningConfiguration::builder().status(status).build())
            .send()
            .await
            .map_err(aws_error(&ctx.address, "PutBucketVersioning"))?;
        Ok(())
    }

    async fn put_tags(&self, ctx: &StepContext, bucket: &str, inputs: &Attrs) -> Result<()> {
        let tagging = Tagging::builder()
            .set_tag_set(Some(s3_tags(&all_tags(ctx, inputs))?))
            .build()
            .map_err(|e| Error::provider(&ctx.address, e))?;
        self.0
            .s3
            .put_bucket_tagging()
            .bucket(bucket)
            .tagging(tagging)
            .send()
            .await
            .map_err(aws_error(&ctx.address, "PutBucketTagging"))?;
        Ok(())
    }

    /// Deletes every object version and delete marker (for `force_destroy`).
    async fn empty(&self, ctx: &StepContext, bucket: &str) -> Result<()> {
        loop {
            let listed = self
                .0
                .s3
                .list_object_versions()
                .bucket(bucket)
                .send()
                .await
                .map_err(aws_error(&ctx.address, "ListObjectVersions"))?;
            let ids: Vec<ObjectIdentifier> = listed
                .versions()
                .iter()
                .filter_map(|v| v.key().map(|k| (k, v.version_id())))
                .chain(listed.delete_markers().iter().filter_map(|m| m.key().map(|k| (k, m.version_id()))))
                .filter_map(|(k, v)| {
                    ObjectIdentifier::builder().key(k).set_version_id(v.map(str::to_owned)).build().ok()
                })
                .collect();
            if ids.is_empty() {
                return Ok(());
            }
            let delete =
                Delete::builder().set_objects(Some(ids)).build().map_err(|e| Error::provider(&ctx.address, e))?;
            self.0
                .s3
                .delete_objects()
                .bucket(bucket)
                .delete(delete)
                .send()
                .await
                .map_err(aws_error(&ctx.address, "DeleteObjects"))?;
        }
    }
}

fn has_kms_key(inputs: &Attrs) -> bool {
    sub(inputs, "encryption").is_some_and(|m| m.contains_key("kms_key_id"))
}

fn bucket_outputs(bucket: &str, region: &str) -> Attrs {
    Attrs::from([("arn".into(), Attr::str(format!("arn:aws:s3:::{bucket}"))), ("region".into(), Attr::str(region))])
}

#[async_trait]
impl Provider for BucketProvider {
    async fn read(&self, _kind: &str, requests: &[ReadRequest<'_>]) -> Result<Vec<Option<Observed>>> {
        // S3 has no batch read: the buckets are read concurrently, five requests each.
        futures::future::try_join_all(requests.iter().map(|r| self.read_one(r))).await
    }

    async fn create(&self, ctx: &StepContext, inputs: &Attrs) -> Result<Observed> {
        let bucket = required(&ctx.address, inputs, "bucket")?;
        let mut create = self.0.s3.create_bucket().bucket(bucket);
        if self.0.region() != "us-east-1" {
            create = create.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.0.region()))
                    .build(),
            );
        }
        match create.send().await {
            Ok(_) => {}
            // A retry after a crash finds the bucket it made; tags below confirm ownership on refresh.
            Err(e) if Failure::of(&e).is(&["BucketAlreadyOwnedByYou"]) => {}
            Err(e) => return Err(Failure::of(&e).into_error(&ctx.address, "CreateBucket")),
        }
        self.put_public_access_block(ctx, bucket, inputs).await?;
        self.put_encryption(ctx, bucket, inputs).await?;
        if bool_input(inputs, "versioning") == Some(true) {
            self.put_versioning(ctx, bucket, true).await?;
        }
        self.put_tags(ctx, bucket, inputs).await?;
        Ok(Observed { inputs: inputs.clone(), outputs: bucket_outputs(bucket, self.0.region()) })
    }

    async fn update(&self, ctx: &StepContext, _prior: &ResourceState, inputs: &Attrs) -> Result<Observed> {
        let bucket = required(&ctx.address, inputs, "bucket")?;
        let changed = |field: &str| ctx.changes(field);
        if changed("public_access_block") {
            self.put_public_access_block(ctx, bucket, inputs).await?;
        }
        if changed("encryption") {
            self.put_encryption(ctx, bucket, inputs).await?;
        }
        if changed("versioning") {
            self.put_versioning(ctx, bucket, bool_input(inputs, "versioning").unwrap_or(false)).await?;
        }
        if changed("tags") {
            self.put_tags(ctx, bucket, inputs).await?;
        }
        Ok(Observed { inputs: inputs.clone(), outputs: bucket_outputs(bucket, self.0.region()) })
    }

    async fn delete(&self, ctx: &StepContext, prior: &ResourceState) -> Result<()> {
        let bucket = required(&ctx.address, &prior.inputs, "bucket")?;
        if bool_input(&prior.inputs, "force_destroy") == Some(true) {
            self.empty(ctx, bucket).await?;
        }
        match self.0.s3.delete_bucket().bucket(bucket).send().await {
            Ok(_) => Ok(()),
            Err(e) if Failure::of(&e).is(&["NoSuchBucket"]) => Ok(()),
            Err(e) if Failure::of(&e).is(&["BucketNotEmpty"]) => Err(Error::provider(
                &ctx.address,
                format!(
                    "bucket {bucket:?} is not empty; empty it, or set `force_destroy(true)` and apply before destroying"
                ),
            )),
            Err(e) => Err(Failure::of(&e).into_error(&ctx.address, "DeleteBucket")),
        }
    }
}

/// Object metadata keys (S3 lower-cases them).
const META_IDENTITY: &str = "paranix-source-identity";
const META_SOURCE: &str = "paranix-source";
const META_SHA256: &str = "paranix-sha256";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `key=value&...` for the `x-amz-tagging` header, percent-encoded.
fn tagging_header(tags: &[(String, String)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    tags.iter().map(|(k, v)| format!("{}={}", enc(k), enc(v))).collect::<Vec<_>>().join("&")
}

struct Upload<'a> {
    ctx: &'a StepContext,
    bucket: &'a str,
    key: &'a str,
    path: &'a str,
    identity: &'a str,
    content_type: Option<&'a str>,
    tagging: String,
}

impl ObjectProvider {
    /// Streams the file up (one PUT for small files, multipart for large ones), hashing as it reads.
    /// Returns the SHA-256 (hex), the size and the version id.
    async fn upload(&self, up: Upload<'_>) -> Result<(String, u64, Option<String>)> {
        let address = &up.ctx.address;
        let io = |e: std::io::Error| Error::provider(address, format!("cannot read {}: {e}", up.path));
        let size = tokio::fs::metadata(up.path).await.map_err(io)?.len();
        if size <= PART_SIZE as u64 {
            let mut body = Vec::with_capacity(size as usize);
            tokio::fs::File::open(up.path).await.map_err(io)?.read_to_end(&mut body).await.map_err(io)?;
            let sha = hex(&Sha256::digest(&body));
            let out = self
                .0
                .s3
                .put_object()
                .bucket(up.bucket)
                .key(up.key)
                .body(ByteStream::from(body))
                .set_content_type(up.content_type.map(str::to_owned))
                .metadata(META_IDENTITY, up.identity)
                .metadata(META_SOURCE, up.path)
                .metadata(META_SHA256, &sha)
                .tagging(&up.tagging)
                .send()
                .await
                .map_err(aws_error(address, "PutObject"))?;
            return Ok((sha, size, out.version_id().map(str::to_owned)));
        }

        let created = self
            .0
            .s3
            .create_multipart_upload()
            .bucket(up.bucket)
            .key(up.key)
            // Every part carries its CRC32, and S3 checks the composite at completion. Without an algorithm
            // here S3 (and moto, in pure Python) computes a CRC64 of the whole object instead.
            .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32)
            .set_content_type(up.content_type.map(str::to_owned))
            .metadata(META_IDENTITY, up.identity)
            .metadata(META_SOURCE, up.path)
            .tagging(&up.tagging)
            .send()
            .await
            .map_err(aws_error(address, "CreateMultipartUpload"))?;
        let upload_id = created.upload_id().unwrap_or_default().to_owned();
        let result = self.upload_parts(&up, &upload_id, size).await;
        match result {
            Ok((sha, parts)) => {
                let out = self
                    .0
                    .s3
                    .complete_multipart_upload()
                    .bucket(up.bucket)
                    .key(up.key)
                    .upload_id(&upload_id)
                    .multipart_upload(CompletedMultipartUpload::builder().set_parts(Some(parts)).build())
                    .send()
                    .await
                    .map_err(aws_error(address, "CompleteMultipartUpload"))?;
                // The hash is known only now: it goes to the state (rewriting the object's metadata would
                // copy the whole object once more).
                Ok((sha, size, out.version_id().map(str::to_owned)))
            }
            Err(e) => {
                let _ =
                    self.0.s3.abort_multipart_upload().bucket(up.bucket).key(up.key).upload_id(&upload_id).send().await;
                Err(e)
            }
        }
    }

    async fn upload_parts(&self, up: &Upload<'_>, upload_id: &str, size: u64) -> Result<(String, Vec<CompletedPart>)> {
        let address = up.ctx.address.clone();
        let path = up.path.to_owned();
        let part_size = part_size(size);
        // Every part in memory holds a permit, from the moment the reader starts filling it until its upload
        // is answered: memory stays below PARTS_IN_MEMORY parts whatever the file's size.
        let permits = Arc::new(tokio::sync::Semaphore::new(PARTS_IN_MEMORY));
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(i32, Vec<u8>, tokio::sync::OwnedSemaphorePermit)>();
        let runtime = tokio::runtime::Handle::current();
        let reader_permits = permits.clone();
        // One blocking reader reads the file once, in order, hashing as it goes.
        let reader = tokio::task::spawn_blocking(move || -> std::io::Result<String> {
            use std::io::Read;
            let mut file = std::fs::File::open(&path)?;
            let mut hasher = Sha256::new();
            let mut number = 0;
            loop {
                let Ok(permit) = runtime.block_on(reader_permits.clone().acquire_owned()) else { break };
                let mut part = Vec::with_capacity(part_size);
                (&mut file).take(part_size as u64).read_to_end(&mut part)?;
                if part.is_empty() {
                    break;
                }
                hasher.update(&part);
                number += 1;
                if tx.send((number, part, permit)).is_err() {
                    break;
                }
            }
            Ok(hex(&hasher.finalize()))
        });
        let mut tasks = tokio::task::JoinSet::new();
        let mut parts = Vec::new();
        let mut sent: u64 = 0;
        let mut first_error = None;
        loop {
            tokio::select! {
                received = rx.recv() => {
                    let Some((number, body, permit)) = received else { break };
                    if first_error.is_some() {
                        break;
                    }
                    sent += body.len() as u64;
                    up.ctx.progress(format!("uploading: {} of {} MiB", sent >> 20, size >> 20));
                    let request = self
                        .0
                        .s3
                        .upload_part()
                        .bucket(up.bucket)
                        .key(up.key)
                        .upload_id(upload_id)
                        .part_number(number)
                        .checksum_algorithm(aws_sdk_s3::types::ChecksumAlgorithm::Crc32)
                        .body(ByteStream::from(body));
                    let address = address.clone();
                    tasks.spawn(async move {
                        let out = request.send().await.map_err(aws_error(&address, "UploadPart"));
                        drop(permit);
                        let out = out?;
                        Ok(CompletedPart::builder()
                            .part_number(number)
                            .set_e_tag(out.e_tag().map(str::to_owned))
                            .set_checksum_crc32(out.checksum_crc32().map(str::to_owned))
                            .build())
                    });
                }
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    collect_part(done, &mut parts, &mut first_error);
                }
            }
        }
        // Stop the reader (it waits for permits or sends into a closed channel) and let in-flight parts finish.
        permits.close();
        drop(rx);
        while let Some(done) = tasks.join_next().await {
            collect_part(done, &mut parts, &mut first_error);
        }
        let sha = reader
            .await
            .map_err(|e| Error::provider(&address, format!("the reader stopped: {e}")))?
            .map_err(|e| Error::provider(&address, format!("cannot read {}: {e}", up.path)))?;
        if let Some(e) = first_error {
            return Err(e);
        }
        parts.sort_by_key(|p| p.part_number());
        Ok((sha, parts))
    }

    async fn put(&self, ctx: &StepContext, inputs: &Attrs) -> Result<Observed> {
        let up = Upload {
            ctx,
            bucket: required(&ctx.address, inputs, "bucket")?,
            key: required(&ctx.address, inputs, "key")?,
            path: required(&ctx.address, inputs, "source")?,
            identity: str_input(inputs, "source_identity").unwrap_or_default(),
            content_type: str_input(inputs, "content_type"),
            tagging: tagging_header(&all_tags(ctx, inputs)),
        };
        let (sha, size, version) = self.upload(up).await?;
        let outputs = Attrs::from([
            ("content_sha256".into(), Attr::Str(sha)),
            ("size".into(), Attr::Int(size as i64)),
            ("version_id".into(), version.map_or(Attr::Null, Attr::Str)),
        ]);
        Ok(Observed { inputs: inputs.clone(), outputs })
    }

    async fn read_one(&self, request: &ReadRequest<'_>) -> Result<Option<Observed>> {
        let address = request.address;
        let bucket = required(address, request.inputs, "bucket")?;
        let key = required(address, request.inputs, "key")?;
        let head = match self.0.s3.head_object().bucket(bucket).key(key).send().await {
            Ok(head) => head,
            Err(e) => {
                let not_found = e.raw_response().is_some_and(|r| r.status().as_u16() == 404);
                if not_found || Failure::of(&e).is(&["NotFound", "NoSuchKey", "NoSuchBucket"]) {
                    return Ok(None);
                }
                return Err(Failure::of(&e).into_error(address, "HeadObject"));
            }
        };
        let tags = self
            .0
            .s3
            .get_object_tagging()
            .bucket(bucket)
            .key(key)
            .send()
            .await
            .map_err(aws_error(address, "GetObjectTagging"))?;
        let meta = head.metadata();
        let get = |k: &str| meta.and_then(|m| m.get(k)).map_or(Attr::Null, Attr::str);
        let mut inputs = request.inputs.clone();
        inputs.insert("source_identity".into(), get(META_IDENTITY));
        inputs.insert("source".into(), get(META_SOURCE));
        inputs.insert("content_type".into(), request.inputs.get("content_type").cloned().unwrap_or(Attr::Null));
        inputs.insert("tags".into(), observed_tags(tags.tag_set().iter().map(|t| (t.key(), t.value()))));
        // Small objects carry their hash in metadata; multipart ones have it in the state only.
        let sha = match get(META_SHA256) {
            Attr::Null => request.outputs.get("content_sha256").cloned().unwrap_or(Attr::Null),
            known => known,
        };
        let outputs = Attrs::from([
            ("content_sha256".into(), sha),
            ("size".into(), Attr::Int(head.content_length().unwrap_or(0))),
            ("version_id".into(), head.version_id().map_or(Attr::Null, Attr::str)),
        ]);
        Ok(Some(Observed { inputs, outputs }))
    }
}

fn collect_part(
    done: std::result::Result<Result<CompletedPart>, tokio::task::JoinError>,
    parts: &mut Vec<CompletedPart>,
    first_error: &mut Option<Error>,
) {
    match done {
        Ok(Ok(part)) => parts.push(part),
        Ok(Err(e)) => {
            first_error.get_or_insert(e);
        }
        Err(e) => {
            first_error.get_or_insert(Error::new(crate::ErrorKind::Provider, format!("an upload task failed: {e}")));
        }
    }
}

#[async_trait]
impl Provider for ObjectProvider {
    async fn read(&self, _kind: &str, requests: &[ReadRequest<'_>]) -> Result<Vec<Option<Observed>>> {
        futures::future::try_join_all(requests.iter().map(|r| self.read_one(r))).await
    }

    async fn create(&self, ctx: &StepContext, inputs: &Attrs) -> Result<Observed> {
        self.put(ctx, inputs).await
    }

    async fn update(&self, ctx: &StepContext, prior: &ResourceState, inputs: &Attrs) -> Result<Observed> {
        let content_same = !["source", "source_identity", "content_type"].iter().any(|f| ctx.changes(f));
        if content_same {
            // Only the tags changed: never re-upload for that.
            let bucket = required(&ctx.address, inputs, "bucket")?;
            let key = required(&ctx.address, inputs, "key")?;
            let tagging = Tagging::builder()
                .set_tag_set(Some(s3_tags(&all_tags(ctx, inputs))?))
                .build()
                .map_err(|e| Error::provider(&ctx.address, e))?;
            self.0
                .s3
                .put_object_tagging()
                .bucket(bucket)
                .key(key)
                .tagging(tagging)
                .send()
                .await
                .map_err(aws_error(&ctx.address, "PutObjectTagging"))?;
            return Ok(Observed { inputs: inputs.clone(), outputs: prior.outputs.clone() });
        }
        self.put(ctx, inputs).await
    }

    async fn delete(&self, ctx: &StepContext, prior: &ResourceState) -> Result<()> {
        let bucket = required(&ctx.address, &prior.inputs, "bucket")?;
        let key = required(&ctx.address, &prior.inputs, "key")?;
        match self.0.s3.delete_object().bucket(bucket).key(key).send().await {
            Ok(_) => Ok(()),
            Err(e) if Failure::of(&e).is(&["NoSuchBucket", "NoSuchKey"]) => Ok(()),
            Err(e) => Err(Failure::of(&e).into_error(&ctx.address, "DeleteObject")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_stay_within_s3_limits_at_any_size() {
        assert_eq!(part_size(2 << 30), PART_SIZE);
        for size in [1u64 << 20, 2 << 30, 60 << 30, 100 << 30, 5 << 40] {
            let part = part_size(size) as u64;
            assert!(part >= 5 << 20, "S3's minimum part is 5 MiB");
            assert!(size.div_ceil(part) <= MAX_PARTS, "{size} bytes in parts of {part}");
            assert_eq!(part % (1 << 20), 0);
        }
    }
}
