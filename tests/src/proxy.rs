//! A latency- and fault-injecting loopback TCP proxy for benchmarks and fault tests: it sits between the SDK
//! and the AWS emulator, holds every HTTP request for a fixed delay before passing it on (so concurrency is
//! measured under cloud-like latency, not the emulator's), and can answer a share of requests itself with
//! HTTP 500/503, the service's throttling error, or a connection closed without an answer, before they reach
//! the emulator.
//!
//! Requests are recognised by their first bytes (an HTTP method at the start of a read from the client);
//! body chunks of large uploads pass without delay. Only the std library is used; one thread per direction
//! per connection.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

const METHODS: [&[u8]; 6] = [b"GET ", b"PUT ", b"POST ", b"HEAD ", b"DELETE ", b"PATCH "];

/// Shares (0.0 to 1.0) of requests answered by the proxy instead of the emulator.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Faults {
    /// HTTP 500 or 503 with an `InternalError` / `ServiceUnavailable` body.
    pub server_errors: f64,
    /// The service's throttling error: `RequestLimitExceeded` (EC2), `Throttling` (IAM), `SlowDown` (S3).
    pub throttling: f64,
    /// The connection is aborted with a TCP reset (RST), no answer.
    pub resets: f64,
}

/// A running proxy; stops accepting when dropped.
#[derive(Debug)]
pub struct LatencyProxy {
    port: u16,
    requests: Arc<AtomicU64>,
    injected: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl LatencyProxy {
    /// Starts a proxy on a free loopback port that forwards to `upstream`, delaying each request by `delay`.
    pub fn start(upstream: SocketAddr, delay: Duration) -> LatencyProxy {
        LatencyProxy::with_faults(upstream, delay, Faults::default())
    }

    /// Like [`LatencyProxy::start`], answering a share of requests with injected faults.
    pub fn with_faults(upstream: SocketAddr, delay: Duration, faults: Faults) -> LatencyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local addr").port();
        let requests = Arc::new(AtomicU64::new(0));
        let injected = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counter, stopped, injections) = (requests.clone(), stop.clone(), injected.clone());
        thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(upstream) else { continue };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (c2, s2) = (client.try_clone().expect("clone"), server.try_clone().expect("clone"));
                let requests = Requests { delay, counter: counter.clone(), faults, injected: injections.clone() };
                thread::spawn(move || pipe(client, server, Some(requests)));
                thread::spawn(move || pipe(s2, c2, None));
            }
        });
        LatencyProxy { port, requests, injected, stop }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests seen so far (forwarded or answered with a fault).
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }

    /// Faults injected so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::SeqCst)
    }
}

/// What the client-to-server direction does to requests.
struct Requests {
    delay: Duration,
    counter: Arc<AtomicU64>,
    faults: Faults,
    injected: Arc<AtomicU64>,
}

/// A pseudo-random number in [0, 1) from the std hasher's per-process random keys and a counter.
fn chance() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    static N: AtomicU64 = AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(N.fetch_add(1, Ordering::Relaxed));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

/// The service a request is for, from its SigV4 credential scope (`.../us-east-1/ec2/aws4_request`).
fn service(head: &[u8]) -> &'static str {
    let text = String::from_utf8_lossy(head);
    for s in ["ec2", "iam", "s3", "ebs"] {
        if text.contains(&format!("/{s}/aws4_request")) {
            return s;
        }
    }
    "unknown"
}

/// The fault to answer with, if any: the response bytes, or `None` for a reset.
fn injected_fault(faults: &Faults, head: &[u8]) -> Option<Option<Vec<u8>>> {
    let roll = chance();
    let response = |status: &str, content_type: &str, body: String| {
        format!(
            "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    if roll < faults.server_errors {
        let (status, code) = if roll < faults.server_errors / 2.0 {
            ("500 Internal Server Error", "InternalError")
        } else {
            ("503 Service Unavailable", "ServiceUnavailable")
        };
        return Some(Some(response(status, "text/xml", error_body(service(head), code))));
    }
    if roll < faults.server_errors + faults.throttling {
        let svc = service(head);
        let (status, code) = match svc {
            "ec2" => ("503 Service Unavailable", "RequestLimitExceeded"),
            "s3" => ("503 Slow Down", "SlowDown"),
            "ebs" => ("429 Too Many Requests", "ThrottlingException"),
            _ => ("400 Bad Request", "Throttling"),
        };
        return Some(Some(response(status, "text/xml", error_body(svc, code))));
    }
    if roll < faults.server_errors + faults.throttling + faults.resets {
        return Some(None);
    }
    None
}

/// An error body in the protocol of `service`.
fn error_body(service: &str, code: &str) -> String {
    match service {
        "ec2" => format!(
            "<Response><Errors><Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error></Errors><RequestID>proxy</RequestID></Response>"
        ),
        "s3" => format!("<Error><Code>{code}</Code><Message>injected by the test proxy</Message></Error>"),
        "ebs" => format!("{{\"message\":\"injected by the test proxy\",\"code\":\"{code}\"}}"),
        _ => format!(
            "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>injected by the test proxy</Message></Error><RequestId>proxy</RequestId></ErrorResponse>"
        ),
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, requests: Option<Requests>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(r) = &requests
            && METHODS.iter().any(|m| buf[..n].starts_with(m))
        {
            r.counter.fetch_add(1, Ordering::SeqCst);
            thread::sleep(r.delay);
            if let Some(fault) = injected_fault(&r.faults, &buf[..n]) {
                r.injected.fetch_add(1, Ordering::SeqCst);
                // Answered here: the emulator never sees the request.
                if let Some(response) = fault {
                    let _ = from.write_all(&response);
                    let _ = from.shutdown(Shutdown::Both);
                } else {
                    reset(&from);
                }
                let _ = to.shutdown(Shutdown::Both);
                return;
            }
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    // A connection being reset (linger 0, set by the other direction) must close without a FIN first.
    let aborting = socket2::SockRef::from(&to).linger().ok().flatten() == Some(Duration::ZERO);
    if !aborting {
        let _ = to.shutdown(Shutdown::Write);
    }
}

/// Aborts the connection with a TCP reset: `SO_LINGER` 0 makes the close send RST instead of FIN, so the
/// client sees "connection reset by peer", as behind a failing load balancer.
fn reset(stream: &TcpStream) {
    let socket = socket2::SockRef::from(stream);
    if socket.set_linger(Some(Duration::ZERO)).is_err() {
        // Without SO_LINGER the client sees a connection closed mid-request, which it retries the same way.
        let _ = stream.shutdown(Shutdown::Both);
    }
}
