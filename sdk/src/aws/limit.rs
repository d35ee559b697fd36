//! Per-service rate limits: a token bucket per AWS service, taken before every attempt of every request of that
//! service (see [`Paced`] for where and why), so refresh and apply share it and a large apply paces itself
//! instead of setting off a throttling storm. It is separate from the graph parallelism knob (how many steps run at once).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use aws_sdk_s3::config::ConfigBag;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::identity::{
    IdentityFuture, ResolveCachedIdentity, SharedIdentityCache, SharedIdentityResolver,
};
use aws_smithy_runtime_api::client::runtime_components::{RuntimeComponents, RuntimeComponentsBuilder};

/// A sustained rate and a burst, in requests.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    /// Requests per second, sustained.
    pub per_second: f64,
    /// Requests allowed at once after a quiet period.
    pub burst: f64,
}

/// The default limits, below AWS's own request-rate buckets so that paranix never causes throttling by
/// itself: EC2's API throttling refills its non-mutating bucket at 20 requests/s with a burst of 100 (AWS EC2
/// "Request throttling"); IAM is documented at far lower rates than the data planes; S3 and EBS direct allow
/// thousands of requests per second per prefix or snapshot; KMS's cryptographic operations share a quota of
/// thousands per second (paranix makes one or two per state history and run).
pub fn default_limits() -> BTreeMap<&'static str, RateLimit> {
    BTreeMap::from([
        ("ebs", RateLimit { per_second: 1000.0, burst: 1000.0 }),
        ("ec2", RateLimit { per_second: 20.0, burst: 100.0 }),
        ("iam", RateLimit { per_second: 10.0, burst: 20.0 }),
        ("kms", RateLimit { per_second: 100.0, burst: 100.0 }),
        ("s3", RateLimit { per_second: 1000.0, burst: 1000.0 }),
    ])
}

/// A token bucket.
#[derive(Debug)]
pub(crate) struct TokenBucket {
    limit: RateLimit,
    state: Mutex<(f64, Instant)>,
}

impl TokenBucket {
    pub(crate) fn new(limit: RateLimit) -> Self {
        TokenBucket { limit, state: Mutex::new((limit.burst, Instant::now())) }
    }

    /// Waits until a request may go.
    pub(crate) async fn acquire(&self) {
        loop {
            let wait = {
                let mut state = self.state.lock().expect("token bucket mutex");
                let (tokens, last) = *state;
                let now = Instant::now();
                let tokens =
                    (tokens + now.duration_since(last).as_secs_f64() * self.limit.per_second).min(self.limit.burst);
                if tokens >= 1.0 {
                    *state = (tokens - 1.0, now);
                    return;
                }
                *state = (tokens, now);
                Duration::from_secs_f64((1.0 - tokens) / self.limit.per_second)
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// Takes a token from `bucket` before every attempt of a request, then resolves the request's identity
/// (credentials) through `inner`, the real cache.
///
/// Why here: the SDK resolves the identity at the start of every attempt, before signing and before anything is
/// dispatched, and no SDK timeout runs yet (paranix sets no operation or attempt timeouts; connect and read
/// timeouts start in the connector). Waiting inside the HTTP connector instead counts as a stalled upload: the
/// SDK's stalled-stream protection sees 0 B/s during the wait and fails the request after its grace period
/// (`aws-smithy-runtime`'s `UploadThroughputCheckFuture` wraps the connector's future), which is what applies
/// at `--parallelism 50` ran into. Attempts that wait are counted when they are sent, not before.
#[derive(Debug)]
pub(crate) struct Paced {
    pub(crate) inner: SharedIdentityCache,
    pub(crate) bucket: Arc<TokenBucket>,
}

impl ResolveCachedIdentity for Paced {
    fn resolve_cached_identity<'a>(
        &'a self,
        resolver: SharedIdentityResolver,
        runtime_components: &'a RuntimeComponents,
        config_bag: &'a ConfigBag,
    ) -> IdentityFuture<'a> {
        IdentityFuture::new(async move {
            self.bucket.acquire().await;
            self.inner.resolve_cached_identity(resolver, runtime_components, config_bag).await
        })
    }

    fn validate_base_client_config(
        &self,
        runtime_components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner.validate_base_client_config(runtime_components, cfg)
    }

    fn validate_final_config(&self, runtime_components: &RuntimeComponents, cfg: &ConfigBag) -> Result<(), BoxError> {
        self.inner.validate_final_config(runtime_components, cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_bucket_allows_its_burst_then_paces_requests() {
        let bucket = TokenBucket::new(RateLimit { per_second: 10.0, burst: 5.0 });
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            bucket.acquire().await;
        }
        assert!(start.elapsed() < Duration::from_millis(1), "the burst goes at once");
        for _ in 0..10 {
            bucket.acquire().await;
        }
        // Ten more at 10/s: about a second of (virtual) time.
        let paced = start.elapsed();
        assert!(paced >= Duration::from_millis(950) && paced <= Duration::from_millis(1100), "{paced:?}");
    }
}
