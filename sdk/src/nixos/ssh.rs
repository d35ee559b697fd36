//! SSH to NixOS hosts: one multiplexed connection per host (the `openssh` crate's ControlMaster, reused by
//! Nix through `NIX_SSHOPTS`), strict host key checking against pinned keys, and fresh non-multiplexed
//! connections for the confirmation step. Commands are argv; quoting happens in exactly one place (the
//! `openssh` crate's per-argument escaping).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use openssh::{KnownHosts, Session, SessionBuilder};
use ssh_key::{HashAlg, PublicKey};

use crate::error::{Error, ErrorKind, Result};

/// How long to wait for a TCP connection and the SSH handshake.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Keepalive: a host that stops answering for 3 × 5 s is treated as gone, not waited on forever.
const KEEPALIVE: Duration = Duration::from_secs(5);

/// How the host's SSH key is verified. Never "accept anything".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostKeyPolicy {
    /// The host must present this key (an OpenSSH public key line, e.g. read from the instance's console).
    Pinned(String),
    /// Trust the key the host presents the first time and pin it from then on (explicitly asked for).
    TrustOnFirstUse,
}

/// Where and how to reach a host.
#[derive(Clone, Debug)]
pub struct Target {
    /// Address (IP or DNS name). `localhost` is written as `127.0.0.1`: Nix treats `localhost` as "no SSH".
    pub host: String,
    /// SSH port.
    pub port: u16,
    /// Login user; commands run through `sudo -n` when it is not `root`.
    pub user: String,
    /// Private key file for the login.
    pub identity: PathBuf,
    /// Host key policy.
    pub host_key: HostKeyPolicy,
    /// Known-hosts file: written from the pinned key, or filled on first use.
    pub known_hosts: PathBuf,
}

impl Target {
    /// `host` or `[host]:port`, as known_hosts files write it.
    fn known_hosts_name(&self) -> String {
        if self.port == 22 { self.host.clone() } else { format!("[{}]:{}", self.host, self.port) }
    }

    /// Writes the known-hosts file for a pinned key (a TOFU file is left to ssh).
    pub(crate) fn prepare_known_hosts(&self) -> Result<()> {
        if let HostKeyPolicy::Pinned(key) = &self.host_key {
            let body: Vec<&str> = key.split_whitespace().take(2).collect();
            let line = format!("{} {}\n", self.known_hosts_name(), body.join(" "));
            std::fs::write(&self.known_hosts, line).map_err(|e| io(&self.known_hosts, e))?;
        }
        Ok(())
    }

    fn builder(&self, control_dir: &Path) -> SessionBuilder {
        let mut b = SessionBuilder::default();
        b.user(self.user.clone())
            .port(self.port)
            .keyfile(&self.identity)
            .user_known_hosts_file(&self.known_hosts)
            .known_hosts_check(match self.host_key {
                HostKeyPolicy::Pinned(_) => KnownHosts::Strict,
                HostKeyPolicy::TrustOnFirstUse => KnownHosts::Add,
            })
            .connect_timeout(CONNECT_TIMEOUT)
            .server_alive_interval(KEEPALIVE)
            .control_directory(control_dir);
        b
    }

    /// `host:port` for messages.
    pub fn display(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Opens the multiplexed connection (an `ssh -M` master in `control_dir`).
    pub(crate) async fn connect(&self, control_dir: &Path) -> Result<Connection> {
        self.prepare_known_hosts()?;
        let session = self.builder(control_dir).connect(&self.host).await.map_err(|e| self.connect_error(e))?;
        Ok(Connection { session, sudo: self.user != "root" })
    }

    /// Runs one command over a fresh, non-multiplexed connection (proves a new login still works).
    pub(crate) async fn fresh_command(&self, argv: &[&str]) -> Result<std::process::Output> {
        let mut command = tokio::process::Command::new("ssh");
        command
            .args([
                "-o",
                "ControlMaster=no",
                "-o",
                "ControlPath=none",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .args(["-o", &format!("UserKnownHostsFile={}", self.known_hosts.display())])
            .args(["-o", &format!("ConnectTimeout={}", CONNECT_TIMEOUT.as_secs())])
            .args(["-o", "IdentitiesOnly=yes", "-i"])
            .arg(&self.identity)
            .args(["-p", &self.port.to_string(), "-l", &self.user, &self.host, "--"]);
        let sudo = (self.user != "root").then_some(["sudo", "-n"]).into_iter().flatten();
        command.args(sudo.chain(argv.iter().copied()).map(shell_quote));
        command.stdin(Stdio::null()).kill_on_drop(true);
        command.output().await.map_err(|e| Error::new(ErrorKind::Io, format!("cannot run ssh: {e}")))
    }

    fn connect_error(&self, e: openssh::Error) -> Error {
        let text = e.to_string();
        let source_text = std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default();
        if text.contains("Host key verification failed")
            || source_text.contains("Host key verification failed")
            || source_text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || source_text.contains("No ED25519 host key is known")
        {
            return self.host_key_error();
        }
        Error::new(ErrorKind::Provider, format!("cannot connect to {}: {text}: {source_text}", self.display()))
    }

    /// The error for a host whose key does not match, naming both fingerprints.
    pub(crate) fn host_key_error(&self) -> Error {
        let expected = match &self.host_key {
            HostKeyPolicy::Pinned(key) => fingerprint(key).unwrap_or_else(|| "an unparseable pinned key".into()),
            HostKeyPolicy::TrustOnFirstUse => {
                let known = std::fs::read_to_string(&self.known_hosts).unwrap_or_default();
                known
                    .lines()
                    .find_map(|l| l.split_once(' ').map(|(_, k)| k.to_owned()))
                    .and_then(|k| fingerprint(&k))
                    .unwrap_or_else(|| "the key trusted on first use".into())
            }
        };
        let presented = presented_key(&self.host, self.port)
            .and_then(|k| fingerprint(&k))
            .unwrap_or_else(|| "unknown (ssh-keyscan found none)".into());
        Error::new(
            ErrorKind::Provider,
            format!(
                "refusing to deploy to {}: host key verification failed: expected {expected}, the host presented {presented}",
                self.display()
            ),
        )
    }
}

/// `SHA256:...` of an OpenSSH public key line.
pub fn fingerprint(key_line: &str) -> Option<String> {
    let body: Vec<&str> = key_line.split_whitespace().take(2).collect();
    PublicKey::from_openssh(&body.join(" ")).ok().map(|k| k.fingerprint(HashAlg::Sha256).to_string())
}

/// The ed25519 key a host presents (for error messages only; never trusted).
fn presented_key(host: &str, port: u16) -> Option<String> {
    let out = std::process::Command::new("ssh-keyscan")
        .args(["-T", "5", "-t", "ed25519", "-p", &port.to_string(), host])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| !l.starts_with('#'))
        .map(|l| l.split_once(' ').map_or(l, |(_, k)| k).to_owned())
}

/// Single-quotes an argument for the remote shell (used only for the fresh connection, which is a plain
/// `ssh` invocation; the multiplexed connection quotes through the `openssh` crate).
fn shell_quote(arg: &str) -> String {
    if !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c)) {
        return arg.to_owned();
    }
    format!("'{}'", arg.replace('\'', "'\\''"))
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("cannot write {}: {e}", path.display()))
}

/// An open multiplexed connection.
pub(crate) struct Connection {
    session: Session,
    sudo: bool,
}

/// What a remote command printed and how it ended.
pub(crate) struct Ran {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Ran {
    /// Whether it exited 0.
    pub(crate) fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

impl Connection {
    /// The control socket, for `NIX_SSHOPTS=-o ControlPath=...`.
    pub(crate) fn control_socket(&self) -> &Path {
        self.session.control_socket()
    }

    /// Runs `argv` on the host (through `sudo -n` for non-root users).
    pub(crate) async fn run(&self, argv: &[&str]) -> Result<Ran> {
        let (program, rest) = argv.split_first().ok_or_else(|| Error::new(ErrorKind::Provider, "empty command"))?;
        let mut command = if self.sudo {
            let mut c = self.session.command("sudo");
            c.arg("-n").arg(*program);
            c
        } else {
            self.session.command(*program)
        };
        command.args(rest.iter().copied()).stdin(openssh::Stdio::null());
        let out = command
            .output()
            .await
            .map_err(|e| Error::new(ErrorKind::Provider, format!("running {program} over SSH failed: {e}")))?;
        Ok(Ran {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }

    /// Whether the master connection is still alive.
    pub(crate) async fn alive(&self) -> bool {
        self.session.check().await.is_ok()
    }

    /// Closes the master.
    pub(crate) async fn close(self) {
        let _ = self.session.close().await;
    }
}
