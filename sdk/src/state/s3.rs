//! The S3 state store: the state as one object, a lock object written with `If-None-Match: *` (so exactly
//! one of two concurrent writers gets it), and state writes guarded by `If-Match: <etag>` (compare-and-swap),
//! on top of the lineage and serial checks every store does.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use aws_sdk_s3::primitives::ByteStream;

use super::{LockInfo, State, StateStore, lock_held};
use crate::aws::context::{AwsContext, Failure};
use crate::error::{Error, ErrorKind, Result};

/// State in an S3 bucket (the bootstrap stack's state bucket in the reference workflow).
#[derive(Debug)]
pub struct S3Store {
    ctx: Arc<AwsContext>,
    bucket: String,
    key: String,
    stack: String,
    held: Mutex<Option<LockInfo>>,
    /// The ETag and lineage/serial of the object as last read or written.
    last: Mutex<Option<(String, String, u64)>>,
}

impl S3Store {
    /// The store for `stack` at `s3://bucket/key`.
    pub fn new(ctx: Arc<AwsContext>, bucket: &str, key: &str, stack: &str) -> Self {
        S3Store {
            ctx,
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            stack: stack.to_owned(),
            held: Mutex::new(None),
            last: Mutex::new(None),
        }
    }

    fn missing_bucket(&self) -> Error {
        Error::new(
            ErrorKind::BackendMissing,
            format!("the state bucket {:?} of stack {:?} does not exist (yet)", self.bucket, self.stack),
        )
    }

    fn lock_key(&self) -> String {
        format!("{}.lock", self.key)
    }

    fn failed(&self, action: &str, f: Failure) -> Error {
        Error::new(
            ErrorKind::State,
            format!(
                "{action} of s3://{}/{} (stack {:?}) failed: {}: {}",
                self.bucket,
                self.key,
                self.stack,
                f.code.as_deref().unwrap_or("no error code"),
                f.message
            ),
        )
    }

    async fn delete_lock(&self) -> Result<()> {
        self.ctx
            .s3
            .delete_object()
            .bucket(&self.bucket)
            .key(self.lock_key())
            .send()
            .await
            .map_err(|e| self.failed("unlocking", Failure::of(&e)))?;
        Ok(())
    }

    async fn read_lock(&self) -> Result<Option<LockInfo>> {
        match self.ctx.s3.get_object().bucket(&self.bucket).key(self.lock_key()).send().await {
            Ok(out) => {
                let bytes =
                    out.body.collect().await.map_err(|e| Error::state(format!("cannot read the lock object: {e}")))?;
                Ok(serde_json::from_slice(&bytes.into_bytes()).ok())
            }
            Err(e) if Failure::of(&e).is(&["NoSuchKey", "NotFound"]) => Ok(None),
            Err(e) => Err(self.failed("reading the lock", Failure::of(&e))),
        }
    }
}

fn precondition_failed<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> bool
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    Failure::of(e).is(&["PreconditionFailed", "ConditionalRequestConflict"])
}

#[async_trait]
impl StateStore for S3Store {
    fn describe(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    async fn lock(&self, operation: &str) -> Result<LockInfo> {
        let info = LockInfo::for_this_process(operation);
        let body = serde_json::to_vec_pretty(&info).expect("lock info serialises");
        let put = self
            .ctx
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(self.lock_key())
            .if_none_match("*")
            .body(ByteStream::from(body))
            .send()
            .await;
        match put {
            Ok(_) => {
                *self.held.lock().expect("mutex") = Some(info.clone());
                Ok(info)
            }
            Err(e) if Failure::of(&e).is(&["NoSuchBucket"]) => Err(self.missing_bucket()),
            Err(e) if precondition_failed(&e) => match self.read_lock().await? {
                Some(holder) => Err(lock_held(&self.stack, &holder)),
                None => Err(Error::new(
                    ErrorKind::LockHeld,
                    format!("the state of stack {:?} was locked a moment ago", self.stack),
                )),
            },
            Err(e) => Err(self.failed("locking", Failure::of(&e))),
        }
    }

    async fn unlock(&self) -> Result<()> {
        if self.held.lock().expect("mutex").take().is_some() {
            self.delete_lock().await?;
        }
        Ok(())
    }

    async fn force_unlock(&self, id: &str) -> Result<()> {
        let Some(holder) = self.read_lock().await? else {
            return Err(Error::state(format!("stack {:?} is not locked", self.stack)));
        };
        if holder.id != id {
            return Err(Error::new(
                ErrorKind::LockHeld,
                format!(
                    "the lock of stack {:?} has id {}, not {id}; it is held by {}",
                    self.stack,
                    holder.id,
                    holder.describe()
                ),
            ));
        }
        self.delete_lock().await
    }

    async fn load(&self) -> Result<Option<State>> {
        let out = match self.ctx.s3.get_object().bucket(&self.bucket).key(&self.key).send().await {
            Ok(out) => out,
            Err(e) if Failure::of(&e).is(&["NoSuchKey", "NotFound"]) => return Ok(None),
            // No bucket, no state: an earlier stack of the same run creates the bucket.
            Err(e) if Failure::of(&e).is(&["NoSuchBucket"]) => return Ok(None),
            Err(e) => return Err(self.failed("reading the state", Failure::of(&e))),
        };
        let etag = out.e_tag().unwrap_or_default().to_owned();
        let bytes =
            out.body.collect().await.map_err(|e| Error::state(format!("cannot read the state: {e}")))?.into_bytes();
        let text =
            String::from_utf8(bytes.to_vec()).map_err(|_| Error::state(format!("{} is not UTF-8", self.describe())))?;
        let state = State::from_json(&text, &self.stack, &self.describe())?;
        *self.last.lock().expect("mutex") = Some((etag, state.lineage.clone(), state.serial));
        Ok(Some(state))
    }

    async fn save(&self, state: &State) -> Result<()> {
        let last = self.last.lock().expect("mutex").clone();
        if let Some((_, lineage, serial)) = &last
            && (*lineage != state.lineage || state.serial <= *serial)
        {
            return Err(Error::state(format!(
                "refusing to write state of stack {:?}: lineage/serial {}/{} does not follow {lineage}/{serial}",
                self.stack, state.lineage, state.serial
            )));
        }
        let put = self
            .ctx
            .s3
            .put_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .body(ByteStream::from(state.to_json().into_bytes()));
        // Compare-and-swap: overwrite only the version we read; create only if nobody else did.
        let put = match &last {
            Some((etag, _, _)) => put.if_match(etag),
            None => put.if_none_match("*"),
        };
        let out = put.send().await.map_err(|e| {
            if precondition_failed(&e) {
                Error::state(format!(
                    "the state of stack {:?} at {} changed underneath this run; nothing was overwritten",
                    self.stack,
                    self.describe()
                ))
            } else {
                self.failed("writing the state", Failure::of(&e))
            }
        })?;
        *self.last.lock().expect("mutex") =
            Some((out.e_tag().unwrap_or_default().to_owned(), state.lineage.clone(), state.serial));
        Ok(())
    }
}
