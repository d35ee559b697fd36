//! A local AWS for integration tests: `sdk/moto/paranix_moto.py` (moto_server 5.2.5 plus the
//! extensions documented in that file) started on a free loopback port, one per [`MotoServer`].
//!
//! ```no_run
//! let moto = paranix_tests::moto::MotoServer::start();
//! // Point the SDK at it: `aws_config::defaults(..).endpoint_url(moto.endpoint())` with any
//! // credentials and region us-east-1, S3 with `force_path_style(true)`, and one attempt
//! // (`AWS_MAX_ATTEMPTS=1` or `RetryConfig::disabled()`), so an unmodelled call fails once.
//! moto.reset();
//! // Dropping it kills the server.
//! ```
//!
//! The server needs the venv `tests/moto/install.sh` creates (`.ci/run` runs it). Only the std
//! library is used: the few control requests are hand-written HTTP/1.1 over a [`TcpStream`].

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The python of the venv `tests/moto/install.sh` creates, unless `PARANIX_MOTO_PYTHON` is set.
pub const DEFAULT_PYTHON: &str = "/root/.cache/paranix-moto-venv/bin/python";

/// How long [`MotoServer::start`] waits for the server to answer (it usually takes about a second).
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

const NOT_INSTALLED: &str = "moto is not installed: run `bash tests/moto/install.sh`";

/// A running `paranix_moto.py` on `127.0.0.1`, killed (and waited for) when dropped.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl MotoServer {
    /// Starts a server with the default settings and waits until it answers.
    ///
    /// Panics with "moto is not installed: run `bash tests/moto/install.sh`" when the venv's python
    /// or the launcher script is missing, and with the tail of the server's log when it does not
    /// come up within [`STARTUP_TIMEOUT`].
    pub fn start() -> Self {
        Self::start_with_args(&[])
    }

    /// Like [`MotoServer::start`], passing extra arguments to `paranix_moto.py`, e.g.
    /// `["--import-snapshot-describes", "0"]` (import-snapshot tasks complete on their first
    /// describe; the default is 2) or `["--import-snapshot-seconds", "5"]`.
    pub fn start_with_args(args: &[&str]) -> Self {
        let python =
            std::env::var_os("PARANIX_MOTO_PYTHON").map_or_else(|| PathBuf::from(DEFAULT_PYTHON), PathBuf::from);
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sdk/moto/paranix_moto.py");
        if !python.exists() || !script.exists() {
            panic!("{NOT_INSTALLED} ({} or {} is missing)", python.display(), script.display());
        }
        // Another process may take the free port before the server binds it: then try another.
        for attempt in 1..=3 {
            match Self::spawn(&python, &script, args) {
                Ok(server) => return server,
                Err(server) if attempt < 3 && server.log_tail().contains("Address already in use") => {}
                Err(server) => {
                    panic!("moto did not start; log {}:\n{}", server.log_path().display(), server.log_tail())
                }
            }
        }
        unreachable!("the last attempt returns or panics")
    }

    /// Starts the process and waits for it; `Err` (with the process gone) if it did not come up.
    fn spawn(python: &Path, script: &Path, args: &[&str]) -> Result<Self, Self> {
        let port = crate::free_port();
        let dir = std::env::temp_dir().join(format!("paranix-moto-{}-{port}", std::process::id()));
        fs::create_dir_all(&dir).expect("create the moto log directory");
        let log = File::create(dir.join("moto.log")).expect("create the moto log file");
        let child = Command::new(python)
            .arg(script)
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(args)
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the moto log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{NOT_INSTALLED} (cannot run {}: {e})", python.display()));
        let mut server = MotoServer { child, port, dir };
        if server.wait_until_up() {
            Ok(server)
        } else {
            let _ = server.child.kill();
            let _ = server.child.wait();
            Err(server)
        }
    }

    /// Polls `/paranix/health` until this very process answers (not some other server that took
    /// the port), the process exits, or [`STARTUP_TIMEOUT`] passes.
    fn wait_until_up(&mut self) -> bool {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let pid = format!("\"pid\": {}", self.child.id());
        while Instant::now() < deadline {
            if self.child.try_wait().expect("poll the moto process").is_some() {
                return false;
            }
            if let Ok((200, body)) = self.try_request("GET", "/paranix/health", None)
                && body.contains(&pid)
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = writeln!(
            File::options().append(true).open(self.log_path()).expect("open the moto log"),
            "paranix: no answer from this process on port {} within {STARTUP_TIMEOUT:?}",
            self.port
        );
        false
    }

    /// The endpoint URL for every AWS service, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The operating system's id of the server process.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Forgets every resource in every service (`POST /moto-api/reset`), including the extension
    /// state: import-snapshot tasks, console host keys and the request count.
    pub fn reset(&self) {
        self.control("POST", "/moto-api/reset", None);
    }

    /// Makes `GetConsoleOutput` of `instance_id` print `public_key` (a whole line such as
    /// `ssh-ed25519 AAAA... root@web`) in its host key block. `instance_id` `"*"` sets the key of
    /// every instance that has none of its own. Without one, each instance gets a generated key.
    pub fn set_console_host_key(&self, instance_id: &str, public_key: &str) {
        let body =
            format!(r#"{{"instance_id": {}, "public_key": {}}}"#, json_string(instance_id), json_string(public_key));
        self.control("POST", "/paranix/console-host-key", Some(&body));
    }

    /// Like [`MotoServer::set_console_host_key`] for every instance that carries the tag
    /// `tag_key` = `tag_value` when its console is read (for instances not launched yet, whose ids
    /// a test cannot know). An instance's own key, set by id, takes precedence.
    pub fn set_console_host_key_for_tag(&self, tag_key: &str, tag_value: &str, public_key: &str) {
        let body = format!(
            r#"{{"tag": {{"Key": {}, "Value": {}}}, "public_key": {}}}"#,
            json_string(tag_key),
            json_string(tag_value),
            json_string(public_key)
        );
        self.control("POST", "/paranix/console-host-key", Some(&body));
    }

    /// How many AWS requests the server answered since it started or was last reset.
    pub fn request_count(&self) -> u64 {
        let body = self.control("GET", "/paranix/requests", None);
        let digits: String = body
            .split_once("\"count\":")
            .map(|(_, rest)| rest.trim_start().chars().take_while(char::is_ascii_digit).collect())
            .unwrap_or_default();
        digits.parse().unwrap_or_else(|_| panic!("unexpected /paranix/requests answer: {body}"))
    }

    /// The server's log file (werkzeug's request log and any Python traceback).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("moto.log")
    }

    /// The last 40 lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Sends a control request and panics (with the log tail) unless it answers 200.
    fn control(&self, method: &str, path: &str, body: Option<&str>) -> String {
        match self.try_request(method, path, body) {
            Ok((200, answer)) => answer,
            Ok((status, answer)) => {
                panic!("moto {method} {path}: HTTP {status}: {answer}\nlog:\n{}", self.log_tail())
            }
            Err(e) => panic!("moto {method} {path}: {e}\nlog:\n{}", self.log_tail()),
        }
    }

    /// One HTTP/1.1 request with `Connection: close`; returns the status code and the body.
    fn try_request(&self, method: &str, path: &str, body: Option<&str>) -> std::io::Result<(u16, String)> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        let body = body.unwrap_or("");
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.port,
            body.len()
        )?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer)?;
        let answer = String::from_utf8_lossy(&answer);
        let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not HTTP: {answer:?}"));
        let (head, body) = answer.split_once("\r\n\r\n").ok_or_else(invalid)?;
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).ok_or_else(invalid)?;
        Ok((status, body.to_owned()))
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        // Errors mean the process is already gone; nothing else to clean up then.
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Keep the log when a test is failing, so its path in the panic message stays readable.
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// `s` as a JSON string literal.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::json_string;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\nd"), r#""a\"b\\c\u000ad""#);
    }
}
