//! The EBS direct provider: a snapshot written block by block from a local raw image (StartSnapshot,
//! PutSnapshotBlock, CompleteSnapshot), the way coldsnap and NixOS/amis' `--ebs-direct` do it, but sending
//! only the blocks that are not all zeros.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_ebs::primitives::ByteStream;
use aws_sdk_ebs::types::{ChecksumAggregationMethod, ChecksumAlgorithm, Tag};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::attr::{Attr, Attrs};
use crate::aws::context::{AwsContext, all_tags, aws_error, int_input, required, str_input};
use crate::aws::ec2::provider::{delete_snapshot, read_snapshots, snapshot_arn, update_snapshot_tags, wait_snapshot};
use crate::error::{Error, Result};
use crate::provider::{Observed, Provider, ReadRequest, StepContext};
use crate::state::ResourceState;

/// The EBS direct API's block size.
pub(crate) const BLOCK_SIZE: usize = 512 * 1024;
/// Blocks in flight. EBS direct serves about 10 requests/s per connection; 32 concurrent 512 KiB blocks keep
/// a link busy, while memory stays at (32 + 8 queued) blocks = 20 MiB.
const BLOCK_WORKERS: usize = 32;
const QUEUED_BLOCKS: usize = 8;
const GIB: u64 = 1 << 30;

/// EBS snapshots uploaded from raw images (`aws_ebs_snapshot`).
#[derive(Debug)]
pub(crate) struct SnapshotProvider(pub(crate) Arc<AwsContext>);

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// What an upload sent.
#[derive(Debug)]
struct Uploaded {
    snapshot_id: String,
    blocks_written: i64,
}

impl SnapshotProvider {
    async fn upload(&self, ctx: &StepContext, inputs: &Attrs) -> Result<Uploaded> {
        let address = &ctx.address;
        let path = required(address, inputs, "source")?.to_owned();
        let size = tokio::fs::metadata(&path)
            .await
            .map_err(|e| Error::provider(address, format!("cannot read {path}: {e}")))?
            .len();
        let gib = int_input(inputs, "volume_size_gib").unwrap_or_else(|| size.div_ceil(GIB).max(1) as i64);
        if (gib as u64) * GIB < size {
            return Err(Error::provider(
                address,
                format!("the image is {size} bytes, larger than volume_size_gib {gib}"),
            ));
        }
        let tags: Vec<Tag> =
            all_tags(ctx, inputs).iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
        let started = self
            .0
            .ebs
            .start_snapshot()
            .volume_size(gib)
            .client_token(ctx.idempotency_token())
            .timeout(60)
            .set_description(str_input(inputs, "description").map(str::to_owned))
            .set_tags(Some(tags))
            .send()
            .await
            .map_err(aws_error(address, "StartSnapshot"))?;
        let snapshot_id = started.snapshot_id().unwrap_or_default().to_owned();
        match self.put_blocks(ctx, &snapshot_id, &path, size).await {
            Ok(uploaded) => Ok(uploaded),
            Err(e) => {
                // An unfinished snapshot is useless: remove it rather than leave it behind.
                let _ = self.0.ec2.delete_snapshot().snapshot_id(&snapshot_id).send().await;
                Err(e)
            }
        }
    }

    async fn put_blocks(&self, ctx: &StepContext, snapshot_id: &str, path: &str, size: u64) -> Result<Uploaded> {
        let address = ctx.address.clone();
        // A blocking reader finds the non-zero blocks and hashes them; the uploads run concurrently.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(i32, Vec<u8>, [u8; 32])>(QUEUED_BLOCKS);
        let file_path = path.to_owned();
        let reader = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Read;
            let mut file = std::fs::File::open(&file_path)?;
            let mut index: i32 = 0;
            loop {
                let mut block = vec![0u8; BLOCK_SIZE];
                let mut filled = 0;
                while filled < BLOCK_SIZE {
                    let n = file.read(&mut block[filled..])?;
                    if n == 0 {
                        break;
                    }
                    filled += n;
                }
                if filled == 0 {
                    return Ok(());
                }
                // The last block is padded with zeros: EBS blocks are always BLOCK_SIZE long.
                if block.iter().any(|b| *b != 0) {
                    let digest: [u8; 32] = Sha256::digest(&block).into();
                    if tx.blocking_send((index, block, digest)).is_err() {
                        return Ok(());
                    }
                }
                index += 1;
                if filled < BLOCK_SIZE {
                    return Ok(());
                }
            }
        });
        let mut tasks = tokio::task::JoinSet::new();
        let mut digests: Vec<(i32, [u8; 32])> = Vec::new();
        let mut failure: Option<Error> = None;
        let total_blocks = size.div_ceil(BLOCK_SIZE as u64);
        while let Some((index, block, digest)) = rx.recv().await {
            while tasks.len() >= BLOCK_WORKERS {
                if let Some(Err(e)) | Some(Ok(Err(e))) =
                    tasks.join_next().await.map(|r| r.map_err(|e| Error::provider(&address, e)))
                {
                    failure.get_or_insert(e);
                }
            }
            if failure.is_some() {
                break;
            }
            digests.push((index, digest));
            if digests.len().is_multiple_of(256) {
                ctx.progress(format!("uploaded {} non-zero blocks (block {index} of {total_blocks})", digests.len()));
            }
            let request = self
                .0
                .ebs
                .put_snapshot_block()
                .snapshot_id(snapshot_id)
                .block_index(index)
                .data_length(BLOCK_SIZE as i32)
                .block_data(ByteStream::from(block))
                .checksum(b64(&digest))
                .checksum_algorithm(ChecksumAlgorithm::ChecksumAlgorithmSha256);
            let address = address.clone();
            tasks.spawn(
                async move { request.send().await.map(|_| ()).map_err(aws_error(&address, "PutSnapshotBlock")) },
            );
        }
        drop(rx);
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done.map_err(|e| Error::provider(&address, e)).and_then(|r| r) {
                failure.get_or_insert(e);
            }
        }
        reader
            .await
            .map_err(|e| Error::provider(&address, format!("the reader stopped: {e}")))?
            .map_err(|e| Error::provider(&address, format!("cannot read {path}: {e}")))?;
        if let Some(e) = failure {
            return Err(e);
        }
        // The LINEAR checksum: SHA-256 over the blocks' SHA-256 digests, in block index order.
        digests.sort_by_key(|(i, _)| *i);
        let mut linear = Sha256::new();
        for (_, d) in &digests {
            linear.update(d);
        }
        self.0
            .ebs
            .complete_snapshot()
            .snapshot_id(snapshot_id)
            .changed_blocks_count(digests.len() as i32)
            .checksum(b64(&linear.finalize()))
            .checksum_algorithm(ChecksumAlgorithm::ChecksumAlgorithmSha256)
            .checksum_aggregation_method(ChecksumAggregationMethod::ChecksumAggregationLinear)
            .send()
            .await
            .map_err(aws_error(&address, "CompleteSnapshot"))?;
        Ok(Uploaded { snapshot_id: snapshot_id.to_owned(), blocks_written: digests.len() as i64 })
    }
}

#[async_trait]
impl Provider for SnapshotProvider {
    async fn read(&self, _kind: &str, requests: &[ReadRequest<'_>]) -> Result<Vec<Option<Observed>>> {
        // Reading never touches the image file: the recorded identity is what the plan compares.
        read_snapshots(&self.0, requests, true).await
    }

    async fn create(&self, ctx: &StepContext, inputs: &Attrs) -> Result<Observed> {
        let uploaded = self.upload(ctx, inputs).await?;
        wait_snapshot(&self.0, ctx, &uploaded.snapshot_id).await?;
        let outputs = Attrs::from([
            ("arn".into(), snapshot_arn(self.0.region(), &uploaded.snapshot_id)),
            ("blocks_written".into(), Attr::Int(uploaded.blocks_written)),
            ("id".into(), Attr::Str(uploaded.snapshot_id)),
        ]);
        Ok(Observed { inputs: inputs.clone(), outputs })
    }

    async fn update(&self, ctx: &StepContext, prior: &ResourceState, inputs: &Attrs) -> Result<Observed> {
        update_snapshot_tags(&self.0, ctx, prior, inputs).await?;
        Ok(Observed { inputs: inputs.clone(), outputs: prior.outputs.clone() })
    }

    async fn delete(&self, ctx: &StepContext, prior: &ResourceState) -> Result<()> {
        delete_snapshot(&self.0, ctx, prior).await
    }
}
