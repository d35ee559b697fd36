//! [`AwsContext`]: the loaded AWS configuration, one client per service, request accounting, and the error and
//! waiting helpers every AWS provider shares.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region};
use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::{BoxError, DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::address::Address;
use crate::attr::{Attr, Attrs};
use crate::error::{Error, ErrorKind, Result};
use crate::provider::StepContext;

/// The AWS services paranix talks to, for request accounting.
pub const SERVICES: [&str; 4] = ["ebs", "ec2", "iam", "s3"];

/// Counts HTTP requests (retries included) per AWS service.
#[derive(Debug, Default)]
pub struct RequestCounts {
    counts: [AtomicU64; 4],
}

impl RequestCounts {
    fn add(&self, service: &str) {
        if let Some(i) = SERVICES.iter().position(|s| *s == service) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Requests so far, per service (services with none are left out).
    pub fn snapshot(&self) -> BTreeMap<&'static str, u64> {
        SERVICES
            .iter()
            .zip(&self.counts)
            .map(|(s, c)| (*s, c.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// All requests so far.
    pub fn total(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

#[derive(Debug, Clone)]
struct CountRequests {
    service: &'static str,
    counts: Arc<RequestCounts>,
}

impl Intercept for CountRequests {
    fn name(&self) -> &'static str {
        "paranix-request-counter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        self.counts.add(self.service);
        Ok(())
    }
}

/// Where to find AWS: region and endpoint override. Credentials come from the standard chain (environment,
/// profiles, SSO, IMDS).
#[derive(Clone, Debug, Default)]
pub struct AwsOptions {
    /// The region (default: from the environment or profile).
    pub region: Option<String>,
    /// An endpoint for every service (a local AWS emulator); `AWS_ENDPOINT_URL` is honoured too. S3 then
    /// uses path-style addressing.
    pub endpoint_url: Option<String>,
    /// How often waiters poll (default 5 s; a local emulator answers at once, tests use less).
    pub poll_interval: Option<Duration>,
    /// Fixed credentials instead of the standard chain (for a local emulator, so a real profile is never
    /// used by accident).
    pub static_credentials: Option<(String, String)>,
    /// Attempts per request, retries included (default: the SDK's standard retry mode, 3 attempts with
    /// jittered exponential backoff on throttling and 5xx). This is the only retry layer.
    pub max_attempts: Option<u32>,
    /// Per-service request rate limits (default: [`default_limits`](super::limit::default_limits)); a service
    /// left out is not limited.
    pub rate_limits: Option<BTreeMap<&'static str, super::limit::RateLimit>>,
}

/// Loaded AWS configuration and clients, shared by every AWS provider and the S3 state store.
#[derive(Clone)]
pub struct AwsContext {
    pub(crate) s3: aws_sdk_s3::Client,
    pub(crate) iam: aws_sdk_iam::Client,
    pub(crate) ec2: aws_sdk_ec2::Client,
    pub(crate) ebs: aws_sdk_ebs::Client,
    pub(crate) kms: aws_sdk_kms::Client,
    region: String,
    endpoint_url: Option<String>,
    poll_interval: Duration,
    counts: Arc<RequestCounts>,
}

impl fmt::Debug for AwsContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AwsContext").field("region", &self.region).field("endpoint_url", &self.endpoint_url).finish()
    }
}

impl AwsContext {
    /// Loads the configuration from the standard chain, with `options` on top.
    pub async fn load(options: &AwsOptions) -> Result<Self> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &options.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &options.endpoint_url {
            loader = loader.endpoint_url(url.clone());
        }
        if let Some(attempts) = options.max_attempts {
            loader = loader.retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(attempts));
        }
        if let Some((key, secret)) = &options.static_credentials {
            loader =
                loader.credentials_provider(aws_sdk_s3::config::Credentials::new(key, secret, None, None, "paranix"));
        }
        let conf = loader.load().await;
        let region = conf.region().map(ToString::to_string).ok_or_else(|| {
            Error::new(ErrorKind::Usage, "no AWS region configured: set AWS_REGION or a profile's region")
        })?;
        let endpoint_url =
            options.endpoint_url.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok().filter(|u| !u.is_empty()));
        let counts = Arc::new(RequestCounts::default());
        let counter = |service| CountRequests { service, counts: counts.clone() };
        let limits = options.rate_limits.clone().unwrap_or_else(super::limit::default_limits);
        // Every service's requests take a token from its own bucket, shared by refresh and apply, before each
        // attempt (in the identity cache: see `limit::Paced`), ahead of one HTTPS client (one connection pool).
        let cache = conf.identity_cache().unwrap_or_else(|| aws_config::identity::IdentityCache::lazy().build());
        let paced = |service: &str| {
            let limit = limits.get(service)?;
            Some(super::limit::Paced { inner: cache.clone(), bucket: Arc::new(super::limit::TokenBucket::new(*limit)) })
        };
        let mut s3 = aws_sdk_s3::config::Builder::from(&conf)
            .force_path_style(endpoint_url.is_some())
            .interceptor(counter("s3"));
        if let Some(pacing) = paced("s3") {
            s3 = s3.identity_cache(pacing);
        }
        let mut iam = aws_sdk_iam::config::Builder::from(&conf).interceptor(counter("iam"));
        if let Some(pacing) = paced("iam") {
            iam = iam.identity_cache(pacing);
        }
        let mut ec2 = aws_sdk_ec2::config::Builder::from(&conf).interceptor(counter("ec2"));
        if let Some(pacing) = paced("ec2") {
            ec2 = ec2.identity_cache(pacing);
        }
        let mut ebs = aws_sdk_ebs::config::Builder::from(&conf).interceptor(counter("ebs"));
        if let Some(pacing) = paced("ebs") {
            ebs = ebs.identity_cache(pacing);
        }
        let mut kms = aws_sdk_kms::config::Builder::from(&conf).interceptor(counter("kms"));
        if let Some(pacing) = paced("kms") {
            kms = kms.identity_cache(pacing);
        }
        let (s3, iam, ec2) = (s3.build(), iam.build(), ec2.build());
        let ebs = ebs
            .timeout_config(
                // EBS direct: a stalled connection is retried instead of hanging the upload (coldsnap#437:
                // uploads hung outside EC2 without a deadline). Connect and read timeouts, not an attempt
                // timeout: they start in the connector, so the rate limit's wait never counts against them.
                aws_sdk_ebs::config::timeout::TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(5))
                    .read_timeout(Duration::from_secs(30))
                    .build(),
            )
            .build();
        Ok(AwsContext {
            s3: aws_sdk_s3::Client::from_conf(s3),
            iam: aws_sdk_iam::Client::from_conf(iam),
            ec2: aws_sdk_ec2::Client::from_conf(ec2),
            ebs: aws_sdk_ebs::Client::from_conf(ebs),
            kms: aws_sdk_kms::Client::from_conf(kms.build()),
            region,
            endpoint_url,
            // Waiting on AWS: instances start in ~10-30 s, images and imports in minutes; 5 s keeps the request
            // count low without adding much latency.
            poll_interval: options.poll_interval.unwrap_or(Duration::from_secs(5)),
            counts,
        })
    }

    /// The region.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The endpoint override, if any.
    pub fn endpoint_url(&self) -> Option<&str> {
        self.endpoint_url.as_deref()
    }

    /// How often waiters poll.
    pub fn poll_interval(&self) -> Duration {
        self.poll_interval
    }

    /// Requests made so far, per service.
    pub fn request_counts(&self) -> &RequestCounts {
        &self.counts
    }
}

/// An AWS error reduced to what callers match on: the error code and message.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub(crate) code: Option<String>,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn of<E, R>(err: &SdkError<E, R>) -> Failure
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
        R: fmt::Debug,
    {
        match err {
            SdkError::ServiceError(service) => {
                let e = service.err();
                Failure {
                    code: e.code().map(str::to_owned),
                    message: e.message().map(str::to_owned).unwrap_or_else(|| DisplayErrorContext(e).to_string()),
                }
            }
            other => Failure { code: None, message: DisplayErrorContext(other).to_string() },
        }
    }

    pub(crate) fn is(&self, codes: &[&str]) -> bool {
        self.code.as_deref().is_some_and(|c| codes.contains(&c))
    }

    pub(crate) fn into_error(self, address: &Address, action: &str) -> Error {
        let code = self.code.as_deref().unwrap_or("no error code");
        Error::new(ErrorKind::Aws, format!("{address}: {action} failed: {code}: {}", self.message))
    }
}

/// Converts an SDK error into a paranix error naming the resource, the action, the AWS code and message.
pub(crate) fn aws_error<E, R>(address: &Address, action: &str) -> impl FnOnce(SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    let address = address.clone();
    let action = action.to_owned();
    move |err| Failure::of(&err).into_error(&address, &action)
}

/// The tags paranix puts on everything it creates, so an interrupted run can find its objects.
pub(crate) fn paranix_tags(ctx: &StepContext) -> [(String, String); 2] {
    [("paranix:stack".to_owned(), ctx.stack.clone()), ("paranix:address".to_owned(), ctx.address.to_string())]
}

/// The user's tags from resolved inputs, plus paranix's own.
pub(crate) fn all_tags(ctx: &StepContext, inputs: &Attrs) -> Vec<(String, String)> {
    let mut tags = user_tags(inputs);
    tags.extend(paranix_tags(ctx));
    tags
}

/// The user's tags from resolved inputs.
pub(crate) fn user_tags(inputs: &Attrs) -> Vec<(String, String)> {
    inputs
        .get("tags")
        .and_then(Attr::as_map)
        .map(|m| m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned()))).collect())
        .unwrap_or_default()
}

/// Observed tags as an attribute, without paranix's own.
pub(crate) fn observed_tags<'a>(tags: impl IntoIterator<Item = (&'a str, &'a str)>) -> Attr {
    Attr::Map(
        tags.into_iter()
            .filter(|(k, _)| !k.starts_with("paranix:"))
            .map(|(k, v)| (k.to_owned(), Attr::str(v)))
            .collect(),
    )
}

/// Tags to add and keys to remove to go from `before` to `after` (both without paranix's own tags).
pub(crate) fn tag_changes(before: &Attrs, after: &Attrs) -> (Vec<(String, String)>, Vec<String>) {
    let old: BTreeMap<String, String> = user_tags(before).into_iter().collect();
    let new: BTreeMap<String, String> = user_tags(after).into_iter().collect();
    let add = new.iter().filter(|(k, v)| old.get(*k) != Some(*v)).map(|(k, v)| (k.clone(), v.clone())).collect();
    let remove = old.keys().filter(|k| !new.contains_key(*k)).cloned().collect();
    (add, remove)
}

pub(crate) fn str_input<'a>(inputs: &'a Attrs, field: &str) -> Option<&'a str> {
    inputs.get(field).and_then(Attr::as_str)
}

pub(crate) fn required<'a>(address: &Address, inputs: &'a Attrs, field: &str) -> Result<&'a str> {
    str_input(inputs, field).ok_or_else(|| Error::provider(address, format!("input `{field}` is missing")))
}

pub(crate) fn int_input(inputs: &Attrs, field: &str) -> Option<i64> {
    inputs.get(field).and_then(Attr::as_int)
}

pub(crate) fn bool_input(inputs: &Attrs, field: &str) -> Option<bool> {
    inputs.get(field).and_then(Attr::as_bool)
}

pub(crate) fn sub<'a>(inputs: &'a Attrs, field: &str) -> Option<&'a std::collections::BTreeMap<String, Attr>> {
    inputs.get(field).and_then(Attr::as_map)
}

/// How often and how long a waiter polls.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wait {
    pub(crate) every: Duration,
    pub(crate) at_most: Duration,
}

impl Wait {
    /// Polling intervals scale down against a local emulator, which answers at once.
    pub(crate) fn new(every: Duration, at_most: Duration) -> Self {
        Wait { every, at_most }
    }
}

/// Polls `check` until it returns `Some`, reporting progress; fails with a timeout naming `what`.
pub(crate) async fn wait_for<T, F, Fut>(ctx: &StepContext, what: &str, wait: Wait, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let started = Instant::now();
    let mut announced = false;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if started.elapsed() >= wait.at_most {
            return Err(Error::provider(
                &ctx.address,
                format!("timed out after {}s waiting for {what}", wait.at_most.as_secs()),
            ));
        }
        if !announced {
            ctx.progress(format!("waiting for {what}"));
            announced = true;
        }
        tokio::time::sleep(wait.every).await;
    }
}

/// Retries `call` while it fails with one of `codes` (IAM's eventual consistency: a role created seconds ago
/// is not usable yet), for at most `budget`, then returns the last error.
pub(crate) async fn retry_on<T, F, Fut>(
    codes: &[&str],
    budget: Duration,
    mut call: F,
) -> std::result::Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, Failure>>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(500);
    loop {
        match call().await {
            Err(f) if f.is(codes) && started.elapsed() + delay < budget => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(8));
            }
            other => return other,
        }
    }
}
