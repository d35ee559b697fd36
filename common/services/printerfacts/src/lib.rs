//! printerfacts: a tiny HTTP/1.1 service that tells the truth about printers.
//!
//! This is the workload of the paranix reference workflow. It runs on the paranoid NixOS host behind nginx
//! (`common/services/printerfacts.nix`), as a `DynamicUser` with no capabilities, so it is deliberately small and
//! uses the standard library only.
//!
//! # Tour
//!
//! ```text
//! GET /fact      200  one random printer fact (text/plain)
//! GET /health    200  "ok"   (also /healthz)
//! GET <other>    404
//! <not GET> ...  405  with `Allow: GET`
//! <garbage>      400
//! ```
//!
//! - [`Config::from_env`] reads `PORT` (default 5000) and `BIND` (default 127.0.0.1).
//! - [`serve`] / [`serve_with`] run the accept loop on a bound [`TcpListener`]: one thread per connection, at most
//!   [`MAX_CONNECTIONS`] at once, one request per connection (`Connection: close`).
//! - [`route`] is the pure part: method + path in, [`Response`] out.
//!
//! Tests bind `127.0.0.1:0`, start [`serve`] on a thread and talk real HTTP to it (`tests/http.rs`).
//!
//! # Code map
//!
//! - facts: [`FACTS`], [`random_fact`]
//! - configuration: [`Config`], [`ConfigError`]
//! - HTTP: [`parse_request_line`], [`RequestLine`], [`route`], [`Response`], [`handle_connection`]
//! - server: [`serve`], [`serve_with`], [`Event`]

use std::collections::hash_map::RandomState;
use std::error::Error;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Every fact this service knows. [`random_fact`] picks one; `/fact` serves it.
pub const FACTS: &[&str] = &[
    "Printers can sense fear. They can also sense deadlines, which is worse.",
    "Nobody has ever fully explained PC LOAD LETTER, and printers intend to keep it that way.",
    "A low toner warning is a feeling, not a measurement.",
    "Most paper jams happen in the one part of the printer that has no door.",
    "A printer is the only machine that can be out of paper and full of paper at the same time.",
    "The average printer spends most of its life warming up and the rest asking for a driver update.",
    "Every printer keeps exactly one sheet of paper hidden inside, for emergencies that never come.",
    "Printing a test page is how a printer proves it can work, right before it stops.",
    "Printers print fastest when nobody needs the printout.",
    "A duplex printer prints on both sides of the page, and now and then on both sides of the room.",
    "Ink cartridges are sold separately so that each colour can run out on its own schedule.",
    "The blinking orange light on a printer is Morse code. It spells 'no'.",
    "Printers cannot read, so they never judge what you print. They only judge when.",
    "Turning a printer off and on again works because it is briefly too confused to refuse.",
    "Somewhere, a print job sent in 2009 is still waiting patiently in a queue.",
    "A printer that says 'Ready' is expressing an opinion, not a fact.",
    "Laser printers contain no laser you can use against your enemies. Many people have checked.",
    "Printers treat the Cancel button as a polite suggestion.",
    "If you stare at a printer while it is 'Processing', it stares back.",
    "Paper trays are sized to hold exactly one sheet fewer than your document.",
    "A printer's favourite paper size is the one that is not loaded.",
    "Wireless printers are named for how often they are connected to your network.",
];

/// Picks a fact from [`FACTS`] at random.
///
/// The randomness comes from the standard library alone: a fresh [`RandomState`] (randomly keyed per thread,
/// re-keyed on every call) hashes a process-wide counter and the current time. This is not cryptographic, and
/// does not need to be: it decides which joke you get.
pub fn random_fact() -> &'static str {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_nanos());
    hasher.write_u128(nanos);
    // The remainder is below `FACTS.len()`, a `usize`, so the cast is lossless and the index in bounds.
    let index = (hasher.finish() % FACTS.len() as u64) as usize;
    FACTS[index]
}

/// Where the server listens, read from the environment by [`Config::from_env`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// The address to bind (`BIND`). Loopback by default: nginx is the only intended client.
    pub bind: IpAddr,
    /// The TCP port (`PORT`).
    pub port: u16,
}

impl Config {
    /// The port used when `PORT` is unset or empty.
    pub const DEFAULT_PORT: u16 = 5000;
    /// The address used when `BIND` is unset or empty.
    pub const DEFAULT_BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    /// Reads `PORT` and `BIND` from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads `PORT` and `BIND` through `lookup`, so callers (and tests) can supply any environment.
    ///
    /// Unset and empty variables take the defaults; anything else must parse or the whole configuration is
    /// rejected, naming the variable and the value.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let set = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let port = match set("PORT") {
            None => Self::DEFAULT_PORT,
            Some(value) => match value.trim().parse::<u16>() {
                Ok(port) if port != 0 => port,
                _ => return Err(ConfigError::InvalidPort { value }),
            },
        };
        let bind = match set("BIND") {
            None => Self::DEFAULT_BIND,
            Some(value) => value.trim().parse::<IpAddr>().map_err(|_| ConfigError::InvalidBind { value })?,
        };
        Ok(Self { bind, port })
    }

    /// The socket address to bind.
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }
}

impl Default for Config {
    fn default() -> Self {
        Self { bind: Self::DEFAULT_BIND, port: Self::DEFAULT_PORT }
    }
}

/// Why [`Config::from_env`] rejected the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `PORT` is not a number from 1 to 65535.
    InvalidPort {
        /// The rejected value.
        value: String,
    },
    /// `BIND` is not an IP address.
    InvalidBind {
        /// The rejected value.
        value: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidPort { value } => write!(f, "invalid PORT '{value}': expected a port number from 1 to 65535"),
            Self::InvalidBind { value } => {
                write!(f, "invalid BIND '{value}': expected an IP address such as 127.0.0.1 or ::1")
            }
        }
    }
}

impl Error for ConfigError {}

/// The parts of an HTTP/1.x request line this service looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine<'a> {
    /// The method, e.g. `GET`.
    pub method: &'a str,
    /// The request path without its query string, e.g. `/fact`.
    pub path: &'a str,
}

/// Parses `METHOD SP TARGET SP HTTP/1.x` (RFC 9112 section 3). Returns `None` for anything else.
///
/// Only origin-form targets (`/path?query`) are accepted; the query string is dropped.
pub fn parse_request_line(line: &str) -> Option<RequestLine<'_>> {
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let well_formed = parts.next().is_none()
        && !method.is_empty()
        && method.bytes().all(|byte| byte.is_ascii_uppercase())
        && target.starts_with('/')
        && matches!(version, "HTTP/1.0" | "HTTP/1.1");
    if !well_formed {
        return None;
    }
    let path = target.split_once('?').map_or(target, |(path, _query)| path);
    Some(RequestLine { method, path })
}

/// An HTTP response: a status and a plain-text body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, e.g. 200.
    pub status: u16,
    /// The body, sent as `text/plain; charset=utf-8`.
    pub body: String,
}

impl Response {
    fn text(status: u16, body: impl Into<String>) -> Self {
        Self { status, body: body.into() }
    }

    /// The reason phrase for [`Response::status`].
    pub fn reason(&self) -> &'static str {
        match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            503 => "Service Unavailable",
            _ => "Unknown",
        }
    }

    /// The complete HTTP/1.1 message: status line, headers and body. Every response closes the connection.
    pub fn to_http(&self) -> Vec<u8> {
        let allow = if self.status == 405 { "Allow: GET\r\n" } else { "" };
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n{allow}\
             Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
            self.status,
            self.reason(),
            self.body.len(),
        );
        let mut message = head.into_bytes();
        message.extend_from_slice(self.body.as_bytes());
        message
    }
}

/// Decides the response to a request: the whole routing table of the service.
pub fn route(method: &str, path: &str) -> Response {
    match (method, path) {
        ("GET", "/fact") => Response::text(200, format!("{}\n", random_fact())),
        ("GET", "/health" | "/healthz") => Response::text(200, "ok\n"),
        ("GET", _) => Response::text(404, "no such page; try /fact\n"),
        _ => Response::text(405, "only GET is supported\n"),
    }
}

/// The most bytes read for a request head. Real requests from nginx are a few hundred bytes.
const MAX_REQUEST_HEAD: usize = 8 * 1024;

/// How long a client may take to send its request or read the answer. Bounds how long a slow client can hold one
/// of the [`MAX_CONNECTIONS`] slots.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// The most connections handled at once; further ones get an immediate 503. nginx on the same host is the only
/// intended client, so 64 is far above real load while bounding threads (64 x [`THREAD_STACK`]) on a small instance.
pub const MAX_CONNECTIONS: usize = 64;

/// Stack size of a connection thread: request handling needs a few KiB, not the default 2 MiB.
const THREAD_STACK: usize = 128 * 1024;

/// Pause after a failed `accept` (e.g. out of file descriptors) before trying again, so a persistent error does not
/// spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// Reads one request from `stream`, answers it and closes the connection.
///
/// Returns the request line (method and path, empty for unparseable requests) and the status sent.
pub fn handle_connection(mut stream: TcpStream) -> io::Result<(String, u16)> {
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let head = read_head(&mut stream)?;
    let first_line = head.as_deref().and_then(|head| head.split("\r\n").next()).unwrap_or_default();
    let (summary, response) = match parse_request_line(first_line) {
        Some(request) => (format!("{} {}", request.method, request.path), route(request.method, request.path)),
        None => (String::new(), Response::text(400, "malformed request\n")),
    };
    stream.write_all(&response.to_http())?;
    stream.flush()?;
    Ok((summary, response.status))
}

/// Reads up to the blank line that ends the request head. `None` if the head is too long or not UTF-8.
fn read_head(stream: &mut TcpStream) -> io::Result<Option<String>> {
    let mut head = Vec::with_capacity(1024);
    let mut buffer = [0_u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        if head.len() >= MAX_REQUEST_HEAD {
            return Ok(None);
        }
        let read = stream.read(&mut buffer)?;
        if read == 0 {
            // The client closed its side early: answer whatever arrived (usually a 400).
            break;
        }
        head.extend_from_slice(&buffer[..read]);
    }
    Ok(String::from_utf8(head).ok())
}

/// Something the server did, reported to the callback of [`serve_with`].
#[derive(Debug)]
pub enum Event {
    /// A request was answered.
    Served {
        /// `METHOD /path`, or empty for a malformed request.
        request: String,
        /// The status sent.
        status: u16,
    },
    /// A connection failed (timeout, reset, ...). Only that connection is affected.
    ConnectionFailed(io::Error),
    /// A connection was refused with 503 because [`MAX_CONNECTIONS`] were busy.
    Busy,
    /// `accept` failed; the server pauses briefly and continues.
    AcceptFailed(io::Error),
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Served { request, status } if request.is_empty() => {
                write!(f, "answered a malformed request: {status}")
            }
            Self::Served { request, status } => write!(f, "{request} {status}"),
            Self::ConnectionFailed(error) => write!(f, "connection failed: {error}"),
            Self::Busy => write!(f, "refused a connection: {MAX_CONNECTIONS} connections busy"),
            Self::AcceptFailed(error) => write!(f, "accept failed, retrying: {error}"),
        }
    }
}

/// Serves requests on `listener` until accepting fails for good, reporting nothing.
///
/// See [`serve_with`].
pub fn serve(listener: TcpListener) -> io::Result<()> {
    serve_with(listener, |_event| {})
}

/// Serves requests on `listener`, calling `report` for every [`Event`].
///
/// Each connection is handled on its own thread, at most [`MAX_CONNECTIONS`] at once. Errors on one connection
/// never stop the server. Transient `accept` errors (an aborted handshake, running out of file descriptors) are
/// reported and retried; the function returns only when the listener itself is unusable.
pub fn serve_with<F>(listener: TcpListener, report: F) -> io::Result<()>
where
    F: Fn(&Event) + Send + Sync + 'static,
{
    let report = Arc::new(report);
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = match listener.accept() {
            Ok((stream, _peer)) => stream,
            Err(error) if is_transient(&error) => {
                report(&Event::AcceptFailed(error));
                thread::sleep(ACCEPT_BACKOFF);
                continue;
            }
            Err(error) => return Err(error),
        };
        if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::AcqRel);
            refuse_busy(stream);
            report(&Event::Busy);
            continue;
        }
        let slot = ConnectionSlot(Arc::clone(&active));
        let worker_report = Arc::clone(&report);
        let spawned =
            thread::Builder::new().name("printerfacts-conn".into()).stack_size(THREAD_STACK).spawn(move || {
                let _slot = slot;
                let event = match handle_connection(stream) {
                    Ok((request, status)) => Event::Served { request, status },
                    Err(error) => Event::ConnectionFailed(error),
                };
                worker_report(&event);
            });
        if let Err(error) = spawned {
            // The closure (and with it the slot and the stream) was dropped: the client sees a closed connection.
            report(&Event::ConnectionFailed(error));
        }
    }
}

/// Frees a connection slot when the connection thread ends, however it ends.
struct ConnectionSlot(Arc<AtomicUsize>);

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Answers 503 without reading the request. Best effort: the client may already be gone.
fn refuse_busy(mut stream: TcpStream) {
    let response = Response::text(503, "busy, try again\n");
    let _ignored = stream.set_write_timeout(Some(IO_TIMEOUT));
    let _ignored = stream.write_all(&response.to_http());
}

/// Accept errors that concern one connection attempt or a momentary shortage, not the listener.
fn is_transient(error: &io::Error) -> bool {
    // EMFILE / ENFILE (out of file descriptors) and ENOBUFS / ENOMEM have no stable io::ErrorKind yet.
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    const ENOBUFS: i32 = 105;
    const ENOMEM: i32 = 12;
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::TimedOut
    ) || matches!(error.raw_os_error(), Some(EMFILE | ENFILE | ENOBUFS | ENOMEM))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The fact list is content: it must be big enough to be fun, without duplicates, and each fact must fit on one
    // line of a text/plain response.
    #[test]
    fn facts_are_plentiful_unique_single_line_ascii() {
        assert!(FACTS.len() >= 20, "only {} facts", FACTS.len());
        for (index, fact) in FACTS.iter().enumerate() {
            assert!(!fact.trim().is_empty(), "fact {index} is empty");
            assert!(fact.is_ascii() && !fact.contains(['\r', '\n']), "fact {index} is not one ASCII line: {fact}");
            assert!(!FACTS[..index].contains(fact), "fact {index} is a duplicate: {fact}");
        }
    }

    // Randomness: over many draws every answer is a known fact, and more than one fact shows up.
    #[test]
    fn random_fact_varies_and_stays_in_the_list() {
        let drawn: Vec<&str> = (0..200).map(|_| random_fact()).collect();
        assert!(drawn.iter().all(|fact| FACTS.contains(fact)));
        let distinct = FACTS.iter().filter(|fact| drawn.contains(fact)).count();
        assert!(distinct > 5, "200 draws gave only {distinct} distinct facts");
    }

    // The request-line parser accepts what nginx sends and rejects the rest.
    #[test]
    fn request_lines() {
        assert_eq!(parse_request_line("GET /fact HTTP/1.1"), Some(RequestLine { method: "GET", path: "/fact" }));
        assert_eq!(parse_request_line("GET /fact?x=1 HTTP/1.0").map(|line| line.path), Some("/fact"));
        assert_eq!(parse_request_line("POST /fact HTTP/1.1").map(|line| line.method), Some("POST"));
        for bad in [
            "",
            "GET",
            "GET /fact",
            "GET fact HTTP/1.1",
            "GET /fact HTTP/2",
            "get /fact HTTP/1.1",
            "GET  /fact HTTP/1.1",
            "GET /fact HTTP/1.1 extra",
        ] {
            assert_eq!(parse_request_line(bad), None, "accepted {bad:?}");
        }
    }

    // The routing table, without sockets.
    #[test]
    fn routes() {
        assert_eq!(route("GET", "/health"), Response::text(200, "ok\n"));
        assert_eq!(route("GET", "/healthz").status, 200);
        assert_eq!(route("GET", "/nope").status, 404);
        assert_eq!(route("DELETE", "/fact").status, 405);
        let fact = route("GET", "/fact");
        assert_eq!(fact.status, 200);
        assert!(FACTS.contains(&fact.body.trim_end()));
    }

    // The wire format: exact length, the Allow header on 405 only, and the connection always closes.
    #[test]
    fn http_message() {
        let message = String::from_utf8(Response::text(405, "no\n").to_http()).expect("responses are UTF-8");
        assert!(message.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(message.contains("\r\nAllow: GET\r\n") && message.contains("\r\nContent-Length: 3\r\n"));
        assert!(message.contains("\r\nConnection: close\r\n") && message.ends_with("\r\n\r\nno\n"));
        let ok = String::from_utf8(Response::text(200, "ok\n").to_http()).expect("responses are UTF-8");
        assert!(!ok.contains("Allow:"));
    }
}
