//! A latency-injecting loopback TCP proxy for benchmarks (and fault tests): it sits between the SDK and the
//! AWS emulator and holds every HTTP request for a fixed delay before passing it on, so concurrency is
//! measured under cloud-like latency (50 ms), not the emulator's.
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

/// A running proxy; stops accepting when dropped.
#[derive(Debug)]
pub struct LatencyProxy {
    port: u16,
    requests: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl LatencyProxy {
    /// Starts a proxy on a free loopback port that forwards to `upstream`, delaying each request by `delay`.
    pub fn start(upstream: SocketAddr, delay: Duration) -> LatencyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local addr").port();
        let requests = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (counter, stopped) = (requests.clone(), stop.clone());
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
                let counter = counter.clone();
                thread::spawn(move || pipe(client, server, Some((delay, counter))));
                thread::spawn(move || pipe(s2, c2, None));
            }
        });
        LatencyProxy { port, requests, stop }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Requests forwarded so far.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for LatencyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, delay: Option<(Duration, Arc<AtomicU64>)>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some((delay, counter)) = &delay
            && METHODS.iter().any(|m| buf[..n].starts_with(m))
        {
            counter.fetch_add(1, Ordering::SeqCst);
            thread::sleep(*delay);
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
