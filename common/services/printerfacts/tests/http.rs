//! printerfacts over real sockets: each test starts the server in-process on a free loopback port and talks
//! HTTP/1.1 to it with a plain `TcpStream`, the way nginx does.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread;
use std::time::Duration;

use printerfacts::{Config, ConfigError, FACTS, serve};

/// Binds 127.0.0.1:0 (the kernel picks a free port) and serves on a background thread for the rest of the test
/// process.
fn start_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    let addr = listener.local_addr().expect("listener address");
    thread::spawn(move || serve(listener));
    addr
}

/// A parsed answer: status code, headers (lower-cased names) and body.
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

/// Sends `raw` as-is and reads until the server closes the connection.
fn exchange(addr: SocketAddr, raw: &str) -> Answer {
    let mut stream = TcpStream::connect(addr).expect("connect to the server");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("set a read timeout");
    stream.write_all(raw.as_bytes()).expect("send the request");
    let mut reply = String::new();
    stream.read_to_string(&mut reply).expect("read the whole reply");
    let (head, body) = reply.split_once("\r\n\r\n").expect("a blank line after the headers");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("a status line");
    let status = status_line.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("a numeric status");
    let headers = lines
        .filter_map(|line| line.split_once(": "))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.to_owned()))
        .collect();
    Answer { status, headers, body: body.to_owned() }
}

/// A well-formed GET as nginx's `proxy_pass` sends it.
fn get(addr: SocketAddr, path: &str) -> Answer {
    exchange(addr, &format!("GET {path} HTTP/1.1\r\nHost: printerfacts.example\r\nConnection: close\r\n\r\n"))
}

// The point of the service: /fact answers 200 with one of the known facts as plain text, and the declared length
// matches the body.
#[test]
fn fact_is_one_of_the_known_facts() {
    let addr = start_server();
    let answer = get(addr, "/fact");
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers.get("content-type").map(String::as_str), Some("text/plain; charset=utf-8"));
    assert_eq!(answer.headers.get("content-length"), Some(&answer.body.len().to_string()));
    let fact = answer.body.trim_end_matches('\n');
    assert!(FACTS.contains(&fact), "not a known fact: {fact:?}");
}

// Load balancers and the NixOS VM test poll the health endpoint under both common names.
#[test]
fn health_answers_ok() {
    let addr = start_server();
    for path in ["/health", "/healthz"] {
        let answer = get(addr, path);
        assert_eq!((answer.status, answer.body.as_str()), (200, "ok\n"), "{path}");
    }
}

// A query string does not change the route.
#[test]
fn query_strings_are_ignored() {
    let addr = start_server();
    assert_eq!(get(addr, "/fact?lang=printer").status, 200);
}

// Anything else is a 404, including paths that merely start like a real one.
#[test]
fn unknown_paths_are_not_found() {
    let addr = start_server();
    for path in ["/", "/facts", "/fact/1", "/health/../fact"] {
        assert_eq!(get(addr, path).status, 404, "{path}");
    }
}

// Only GET is served; other methods get 405 with an Allow header saying so.
#[test]
fn other_methods_are_not_allowed() {
    let addr = start_server();
    let answer = exchange(addr, "POST /fact HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(answer.status, 405);
    assert_eq!(answer.headers.get("allow").map(String::as_str), Some("GET"));
}

// Garbage, and a client that hangs up after half a request line, get a 400 instead of a hung or crashed server;
// the server keeps answering afterwards.
#[test]
fn malformed_requests_are_rejected_and_the_server_carries_on() {
    let addr = start_server();
    assert_eq!(exchange(addr, "HELLO PRINTER\r\n\r\n").status, 400);

    let mut half = TcpStream::connect(addr).expect("connect");
    half.write_all(b"GET /fa").expect("send half a request");
    half.shutdown(std::net::Shutdown::Write).expect("close our side");
    let mut reply = String::new();
    half.read_to_string(&mut reply).expect("read the reply");
    assert!(reply.starts_with("HTTP/1.1 400 "), "{reply:?}");

    assert_eq!(get(addr, "/health").status, 200);
}

// Many clients at once (well under the connection cap) are all answered.
#[test]
fn concurrent_clients_are_all_served() {
    let addr = start_server();
    let clients: Vec<_> = (0..16).map(|_| thread::spawn(move || get(addr, "/fact").status)).collect();
    for client in clients {
        assert_eq!(client.join().expect("client thread"), 200);
    }
}

/// An environment made of `pairs`, for [`Config::from_lookup`].
fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |name| vars.get(name).cloned()
}

// Configuration: nothing set means 127.0.0.1:5000; PORT and BIND override it; empty values count as unset.
#[test]
fn config_defaults_and_overrides() {
    let default = Config::from_lookup(env(&[])).expect("defaults");
    assert_eq!(default.socket_addr(), "127.0.0.1:5000".parse().expect("address"));
    assert_eq!(default, Config::default());

    let set = Config::from_lookup(env(&[("PORT", "8080"), ("BIND", "::1")])).expect("overrides");
    assert_eq!(set.socket_addr(), "[::1]:8080".parse().expect("address"));

    let empty = Config::from_lookup(env(&[("PORT", ""), ("BIND", " ")])).expect("empty values");
    assert_eq!(empty, Config::default());
}

// Bad values are refused with a message naming the variable and the value, so a typo in the NixOS module shows
// up in the journal instead of as a service listening somewhere unexpected.
#[test]
fn config_rejects_bad_values() {
    for port in ["0", "65536", "http", "-1"] {
        let error = Config::from_lookup(env(&[("PORT", port)])).expect_err(port);
        assert_eq!(error, ConfigError::InvalidPort { value: port.to_owned() });
        assert!(error.to_string().contains(&format!("PORT '{port}'")), "{error}");
    }
    let error = Config::from_lookup(env(&[("BIND", "localhost")])).expect_err("a host name is not an address");
    assert_eq!(error.to_string(), "invalid BIND 'localhost': expected an IP address such as 127.0.0.1 or ::1");
}
