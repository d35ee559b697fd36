//! The sandbox: a local AWS emulator (`moto_server` with paranix's extensions for the few calls moto lacks),
//! started on a free loopback port and kept running between runs, so `--sandbox` programs can `up`, `plan`
//! and `destroy` the way they would against AWS, with nothing leaving the machine.
//!
//! The server's pid and port are kept in `<state-dir>/sandbox/server.json`; a later run reuses the server
//! while it answers, and `sandbox stop` ends it.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};

/// The moto extensions (ImportSnapshot, console host keys, GetBucketVersioning's reply), run as the server.
const LAUNCHER: &str = include_str!("../moto/paranix_moto.py");

/// How to install what the sandbox needs.
pub const INSTALL_HINT: &str = "install moto with `pip install 'moto[server]==5.2.5'` (it provides `moto_server`), \
     or point PARANIX_MOTO_PYTHON at a Python that has it";

/// A running sandbox server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    /// The server's process id.
    pub pid: u32,
    /// Its loopback port.
    pub port: u16,
}

impl Sandbox {
    /// The endpoint URL every AWS client uses.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The sandbox's directory under a state directory.
    pub fn dir(state_dir: &Path) -> PathBuf {
        state_dir.join("sandbox")
    }

    /// Reuses the sandbox server recorded under `state_dir` if it still answers, else starts one.
    pub fn start_or_reuse(state_dir: &Path) -> Result<Sandbox> {
        let dir = Sandbox::dir(state_dir);
        let record = dir.join("server.json");
        if let Some(running) =
            std::fs::read_to_string(&record).ok().and_then(|t| serde_json::from_str::<Sandbox>(&t).ok())
            && answers(running.port)
        {
            return Ok(running);
        }
        std::fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
        let python = python()?;
        let script = dir.join("paranix_moto.py");
        std::fs::write(&script, LAUNCHER).map_err(|e| io("write", &script, e))?;
        let port = free_port()?;
        let log_path = dir.join("server.log");
        let log = std::fs::File::create(&log_path).map_err(|e| io("create", &log_path, e))?;
        let child = {
            use std::os::unix::process::CommandExt;
            Command::new(&python)
                .arg(&script)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(log.try_clone().map_err(|e| io("open", &log_path, e))?)
                .stderr(log)
                // Its own process group: the server outlives this run and is not hit by the terminal's ^C.
                .process_group(0)
                .spawn()
                .map_err(|e| {
                    Error::new(ErrorKind::Io, format!("cannot start {}: {e}; {INSTALL_HINT}", python.display()))
                })?
        };
        let sandbox = Sandbox { pid: child.id(), port };
        let started = Instant::now();
        while !answers(port) {
            if started.elapsed() > Duration::from_secs(30) {
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(10).collect();
                return Err(Error::new(
                    ErrorKind::Io,
                    format!(
                        "the sandbox server did not answer within 30 s; its log ends with:\n{}",
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        std::fs::write(&record, serde_json::to_string(&sandbox).expect("serialises"))
            .map_err(|e| io("write", &record, e))?;
        Ok(sandbox)
    }

    /// Stops the sandbox server recorded under `state_dir`, if any. Returns whether one was running.
    pub fn stop(state_dir: &Path) -> Result<bool> {
        let record = Sandbox::dir(state_dir).join("server.json");
        let Some(running) =
            std::fs::read_to_string(&record).ok().and_then(|t| serde_json::from_str::<Sandbox>(&t).ok())
        else {
            return Ok(false);
        };
        let alive = answers(running.port);
        if alive {
            // The recorded pid is the server we started (it answers on the recorded port).
            let _ = Command::new("kill").arg(running.pid.to_string()).status();
        }
        let _ = std::fs::remove_file(&record);
        Ok(alive)
    }
}

fn io(action: &str, path: &Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("cannot {action} {}", path.display())).with_source(e)
}

/// The Python that has moto: `PARANIX_MOTO_PYTHON`, else `python3` if it can import moto, else the
/// interpreter named on the first line of `moto_server` on PATH. (paranix's own test setup exports
/// `PARANIX_MOTO_PYTHON` for the pinned moto.)
fn python() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("PARANIX_MOTO_PYTHON") {
        return Ok(PathBuf::from(p));
    }
    let has_moto = |python: &Path| {
        Command::new(python)
            .args(["-c", "import moto.server"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has_moto(Path::new("python3")) {
        return Ok(PathBuf::from("python3"));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let Ok(text) = std::fs::read_to_string(dir.join("moto_server")) else { continue };
        let interpreter = text.lines().next().and_then(|l| l.strip_prefix("#!")).map(|l| l.trim().to_owned());
        if let Some(interpreter) = interpreter.filter(|i| i.contains("python")) {
            let interpreter = PathBuf::from(interpreter);
            if has_moto(&interpreter) {
                return Ok(interpreter);
            }
        }
    }
    Err(Error::new(
        ErrorKind::NoProvider,
        format!("--sandbox needs moto_server, which is not installed: {INSTALL_HINT}"),
    ))
}

fn free_port() -> Result<u16> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| Error::new(ErrorKind::Io, format!("no free port: {e}")))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| Error::new(ErrorKind::Io, format!("no free port: {e}")))
}

/// Whether a moto server answers on `port`.
fn answers(port: u16) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}
