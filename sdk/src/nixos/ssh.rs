//! SSH to NixOS hosts: one multiplexed connection per host and deploy, strict host key checking against a
//! pinned key on every connection, and nothing left behind.
//!
//! Every `ssh` paranix starts, and every `ssh` Nix starts for it (`nix-copy-closure` through `NIX_SSHOPTS`),
//! carries the same options ([`Target::ssh_options`]): no configuration file (`-F none`: no `ProxyCommand` or
//! `Host` block of the operator's reaches it), the pinned `known_hosts` and no global one,
//! `StrictHostKeyChecking=yes` (trust on first use only when asked, and only for the very first connection),
//! `BatchMode=yes`, the deploy key alone (`IdentitiesOnly=yes`, no agent), a connect timeout and keepalives,
//! and `--` before the destination. The master connection (`Connection`) is a plain `ssh -M` with a bounded
//! `ControlPersist`; commands go through it when it is up and connect directly, with the same pinned options,
//! when it is not, so losing the master never loosens a check.
//!
//! Cleanup: a `Connection` closes its master when closed or dropped, and removes its work directory (the
//! private key copy, the control socket, `known_hosts`) with it. Live connections are registered so that
//! [`close_all_now`] can close them when the process is about to exit on a second signal; a run killed
//! outright leaves a work directory whose owner is dead, which the next run finds and cleans
//! ([`clean_leftovers`]).
//!
//! Commands are argv; quoting happens in exactly one place (`shell_quote`, for the remote shell).

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ssh_key::{HashAlg, PublicKey};
use tokio::io::AsyncWriteExt;

use crate::error::{Error, ErrorKind, Result};

/// How long to wait for a TCP connection and the SSH handshake, by default.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Keepalive: a host that stops answering for 3 × 5 s is treated as gone, not waited on forever.
const KEEPALIVE: Duration = Duration::from_secs(5);
/// How long a master connection outlives its last use: long enough for a deploy's quiet phases (activation,
/// health checks run from here), short enough that a master orphaned by a killed run soon ends by itself.
const CONTROL_PERSIST: Duration = Duration::from_secs(120);

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
    /// How long a TCP connection and the SSH handshake may take ([`CONNECT_TIMEOUT`] by default).
    pub connect_timeout: Duration,
}

/// Checks a host address given to SSH: a DNS name or an IP address, nothing `ssh` could take for an option
/// (a leading `-`) or a user (`@`), no whitespace or control characters.
pub fn check_host(host: &str) -> std::result::Result<(), String> {
    if host.is_empty() || host.len() > 253 {
        return Err(format!("{host:?} is not a host name or address (1 to 253 characters)"));
    }
    if host.starts_with('-') {
        return Err(format!("{host:?} starts with `-`, which ssh would read as an option"));
    }
    if let Some(c) = host.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))) {
        return Err(format!(
            "{host:?} contains {c:?}: a host is a DNS name or an IPv4/IPv6 address (letters, digits, `.`, `-`, `:`)"
        ));
    }
    if host == "localhost" {
        return Err("write 127.0.0.1: Nix treats `localhost` as \"no SSH\" and would copy to this machine".into());
    }
    Ok(())
}

/// Checks a login user name: a POSIX user name (`[a-z_][a-z0-9_-]*`, at most 32 characters).
pub fn check_user(user: &str) -> std::result::Result<(), String> {
    let mut chars = user.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    if !first_ok || user.len() > 32 || !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c))
    {
        return Err(format!(
            "{user:?} is not a user name: a lowercase letter or `_`, then lowercase letters, digits, `_` and `-`, \
             at most 32 characters"
        ));
    }
    Ok(())
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
            crate::state::write_private_file(&self.known_hosts, line.as_bytes())
                .map_err(|e| io(&self.known_hosts, e))?;
        }
        Ok(())
    }

    /// Whether a host key has been recorded in the known-hosts file (pinned, or learnt on first use).
    fn knows_a_key(&self) -> bool {
        std::fs::read_to_string(&self.known_hosts).is_ok_and(|t| t.lines().any(|l| !l.trim().is_empty()))
    }

    /// The options of every `ssh` invocation for this target (see the module docs), without the destination.
    /// `StrictHostKeyChecking=yes` unless the policy is trust on first use and no key is known yet.
    pub fn ssh_options(&self) -> Vec<OsString> {
        let strict = match self.host_key {
            HostKeyPolicy::TrustOnFirstUse if !self.knows_a_key() => "accept-new",
            _ => "yes",
        };
        let mut options: Vec<OsString> = vec!["-F".into(), "none".into()];
        let mut option = |o: String| {
            options.push("-o".into());
            options.push(o.into());
        };
        option("BatchMode=yes".into());
        option(format!("StrictHostKeyChecking={strict}"));
        option(format!("UserKnownHostsFile={}", self.known_hosts.display()));
        option("GlobalKnownHostsFile=/dev/null".into());
        option("UpdateHostKeys=no".into());
        option("IdentitiesOnly=yes".into());
        option("IdentityAgent=none".into());
        option(format!("IdentityFile={}", self.identity.display()));
        option("PasswordAuthentication=no".into());
        option("KbdInteractiveAuthentication=no".into());
        option(format!("ConnectTimeout={}", self.connect_timeout.as_secs().max(1)));
        option(format!("ServerAliveInterval={}", KEEPALIVE.as_secs()));
        option("ServerAliveCountMax=3".into());
        option(format!("Port={}", self.port));
        option(format!("User={}", self.user));
        options
    }

    /// `NIX_SSHOPTS` for Nix's own `ssh`: the control socket `socket` (used while the master is up) plus the
    /// pinned options, so a connection Nix opens by itself is checked exactly as the master was.
    pub(crate) fn nix_sshopts(&self, socket: &Path) -> String {
        let mut options = vec![
            "-o".to_owned(),
            format!("ControlPath={}", socket.display()),
            "-o".to_owned(),
            "ControlMaster=no".to_owned(),
        ];
        options.extend(self.ssh_options().iter().map(|o| o.to_string_lossy().into_owned()));
        options.join(" ")
    }

    /// `host:port` for messages.
    pub fn display(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Opens the multiplexed connection: an `ssh -M` master whose control socket and log live in `dir` (the
    /// work directory, removed with the connection).
    pub(crate) async fn connect(&self, dir: WorkDir) -> Result<Connection> {
        self.prepare_known_hosts()?;
        let socket = dir.path.join("s");
        let log = dir.path.join("master.log");
        let mut command = tokio::process::Command::new("ssh");
        command
            .args(["-M", "-N", "-f", "-E"])
            .arg(&log)
            .arg("-S")
            .arg(&socket)
            .args(["-o", &format!("ControlPersist={}s", CONTROL_PERSIST.as_secs())])
            .args(self.ssh_options())
            .arg("--")
            .arg(&self.host)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let status = command.status().await.map_err(|e| Error::new(ErrorKind::Io, format!("cannot run ssh: {e}")))?;
        if !status.success() {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            return Err(self.connect_error(text.trim()).await);
        }
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        live().insert(id, Live { socket: socket.clone(), host: self.host.clone(), dir: dir.path.clone() });
        Ok(Connection { id, target: self.clone(), socket, dir: Some(dir), closed: false })
    }

    /// A plain `ssh` command to this target with the pinned options and `remote` (already quoted) as the
    /// remote command, through `socket` when given (falling back to a direct connection with the same
    /// options when the master is gone), or a fresh connection when not.
    fn ssh_command(&self, socket: Option<&Path>, remote: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("ssh");
        match socket {
            Some(socket) => command.arg("-o").arg(format!("ControlPath={}", socket.display())),
            None => command.args(["-o", "ControlPath=none"]),
        };
        command.args(["-o", "ControlMaster=no"]).args(self.ssh_options()).arg("--").arg(&self.host).arg(remote);
        command.stdin(Stdio::null()).kill_on_drop(true);
        command
    }

    /// The remote command line for `argv`, through `sudo -n` when the login user is not root.
    fn remote(&self, argv: &[&str]) -> String {
        let sudo = (self.user != "root").then_some(["sudo", "-n", "--"]).into_iter().flatten();
        sudo.chain(argv.iter().copied()).map(shell_quote).collect::<Vec<_>>().join(" ")
    }

    /// Runs one command over a fresh, non-multiplexed connection (proves a new login still works).
    pub(crate) async fn fresh_command(&self, argv: &[&str]) -> Result<Ran> {
        run(self.ssh_command(None, &self.remote(argv)), None, argv).await
    }

    async fn connect_error(&self, log: &str) -> Error {
        if log.contains("Host key verification failed")
            || log.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || log.contains("No ED25519 host key is known")
        {
            return self.host_key_error().await;
        }
        let why = log.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("ssh failed");
        Error::new(ErrorKind::Provider, format!("cannot connect to {}: {why}", self.display()))
    }

    /// The error for a host whose key does not match, naming both fingerprints.
    pub(crate) async fn host_key_error(&self) -> Error {
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
            .await
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
async fn presented_key(host: &str, port: u16) -> Option<String> {
    let out = tokio::process::Command::new("ssh-keyscan")
        .args(["-T", "5", "-t", "ed25519", "-p", &port.to_string(), "--", host])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| !l.starts_with('#'))
        .map(|l| l.split_once(' ').map_or(l, |(_, k)| k).to_owned())
}

/// Single-quotes an argument for the remote shell: the one place remote command lines are quoted.
pub(crate) fn shell_quote(arg: &str) -> String {
    if !arg.is_empty() && arg.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:@%+,".contains(c)) {
        return arg.to_owned();
    }
    format!("'{}'", arg.replace('\'', "'\\''"))
}

fn io(path: &Path, e: std::io::Error) -> Error {
    Error::new(ErrorKind::Io, format!("cannot write {}: {e}", path.display()))
}

/// What a remote command printed and how it ended.
#[derive(Debug)]
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

    /// Whether ssh itself failed (exit 255: no connection, authentication or host key failure).
    pub(crate) fn unreachable(&self) -> bool {
        self.code == Some(255)
    }
}

/// Runs an `ssh` command, feeding `stdin` when given.
async fn run(mut command: tokio::process::Command, stdin: Option<&[u8]>, argv: &[&str]) -> Result<Ran> {
    let program = argv.first().copied().unwrap_or("the command");
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    if stdin.is_some() {
        command.stdin(Stdio::piped());
    }
    let mut child = command.spawn().map_err(|e| Error::new(ErrorKind::Io, format!("cannot run ssh: {e}")))?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A remote command that exits early closes the pipe; its exit status tells what happened.
        let _ = pipe.write_all(input).await;
        drop(pipe);
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| Error::new(ErrorKind::Provider, format!("running {program} over SSH failed: {e}")))?;
    Ok(Ran {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    })
}

/// A deploy's private work directory (mode 0700) in the system's temporary directory,
/// `paranix-ssh-<pid>-<n>`: the private key copy, `known_hosts`, the control socket, and an `owner` file naming
/// this process (for [`clean_leftovers`]). Removed when dropped, and by [`close_all_now`].
#[derive(Debug)]
pub(crate) struct WorkDir {
    path: PathBuf,
}

impl WorkDir {
    /// Creates a new work directory under `parent`.
    pub(crate) fn create(parent: &Path) -> Result<WorkDir> {
        use std::os::unix::fs::DirBuilderExt as _;
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        clean_leftovers(parent);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = parent.join(format!("{WORK_DIR_PREFIX}{}-{n}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    let dir = WorkDir { path };
                    let owner = dir.path.join(OWNER_FILE);
                    crate::state::write_private_file(&owner, owner_stamp().as_bytes()).map_err(|e| io(&owner, e))?;
                    return Ok(dir);
                }
                // Left by an earlier process with the same pid whose directory was not cleaned yet.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => {
                    return Err(Error::new(ErrorKind::Io, format!("cannot create {}: {e}", path.display())));
                }
            }
        }
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the private key copy (0600) and returns its path.
    pub(crate) fn write_key(&self, key: &str) -> Result<PathBuf> {
        let path = self.path.join("id");
        crate::state::write_private_file(&path, format!("{}\n", key.trim_end()).as_bytes())
            .map_err(|e| io(&path, e))?;
        Ok(path)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// The file naming a work directory's owning process: `<pid> <start time>` (the start time tells a reused pid).
const OWNER_FILE: &str = "owner";

/// The prefix of work directories, which [`clean_leftovers`] looks for.
pub const WORK_DIR_PREFIX: &str = "paranix-ssh-";

/// `<pid> <start time in clock ticks since boot>` of this process.
fn owner_stamp() -> String {
    let pid = std::process::id();
    format!("{pid} {}", start_time(pid).unwrap_or_default())
}

/// A process's start time (field 22 of `/proc/<pid>/stat`), if it runs.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// Cleans what killed runs left in `parent` (the temporary directory): for each `paranix-ssh-*` work directory
/// whose owner no longer runs (its pid is gone, or belongs to a process started later), closes the master
/// whose control socket it holds and removes it, private key copy included. Returns how many it removed.
pub fn clean_leftovers(parent: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(parent) else { return 0 };
    let mut removed = 0;
    for entry in entries.filter_map(std::result::Result::ok) {
        let path = entry.path();
        if !entry.file_name().to_string_lossy().starts_with(WORK_DIR_PREFIX) {
            continue;
        }
        let Ok(owner) = std::fs::read_to_string(path.join(OWNER_FILE)) else { continue };
        let mut parts = owner.split_whitespace();
        let (Some(Ok(pid)), Some(Ok(started))) = (parts.next().map(str::parse::<u32>), parts.next().map(str::parse))
        else {
            continue;
        };
        if start_time(pid) == Some(started) {
            continue; // its owner still runs
        }
        let socket = path.join("s");
        if socket.exists() {
            exit_master(&socket, "leftover");
        }
        if std::fs::remove_dir_all(&path).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Asks the master behind `socket` to exit (`ssh -O exit`), waiting at most a few seconds. Synchronous: used
/// where no runtime may be left (a process about to exit) and for leftovers.
fn exit_master(socket: &Path, host: &str) {
    let child = std::process::Command::new("ssh")
        .args(["-F", "none", "-o", "BatchMode=yes", "-S"])
        .arg(socket)
        .args(["-O", "exit", "--", host])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Ok(mut child) = child {
        for _ in 0..50 {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A live master connection, for [`close_all_now`].
struct Live {
    socket: PathBuf,
    host: String,
    dir: PathBuf,
}

static NEXT: AtomicU64 = AtomicU64::new(0);

fn live() -> std::sync::MutexGuard<'static, BTreeMap<u64, Live>> {
    static LIVE: Mutex<BTreeMap<u64, Live>> = Mutex::new(BTreeMap::new());
    LIVE.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Closes every open master connection of this process and removes its work directory (private key copies
/// included), synchronously. For a process about to exit without unwinding (the CLI's second signal); normal
/// paths close their connections themselves.
pub fn close_all_now() {
    let all = std::mem::take(&mut *live());
    for (_, conn) in all {
        exit_master(&conn.socket, &conn.host);
        let _ = std::fs::remove_dir_all(&conn.dir);
    }
}

/// An open multiplexed connection (see the module docs).
#[derive(Debug)]
pub(crate) struct Connection {
    id: u64,
    target: Target,
    socket: PathBuf,
    dir: Option<WorkDir>,
    closed: bool,
}

impl Connection {
    /// The target.
    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// `NIX_SSHOPTS` for Nix's own `ssh` (nix-copy-closure): this connection's control socket plus the pinned
    /// options. Nix splits it on whitespace, so no path in it may contain any (the work directory's do not;
    /// an identity file with a space is refused at plan time).
    pub(crate) fn nix_sshopts(&self) -> String {
        self.target.nix_sshopts(&self.socket)
    }

    /// Runs `argv` on the host (through `sudo -n` for non-root users).
    pub(crate) async fn run(&self, argv: &[&str]) -> Result<Ran> {
        run(self.target.ssh_command(Some(&self.socket), &self.target.remote(argv)), None, argv).await
    }

    /// Runs `argv` on the host with `input` on its standard input (for data too large for a command line).
    pub(crate) async fn run_with_input(&self, argv: &[&str], input: &[u8]) -> Result<Ran> {
        let mut command = self.target.ssh_command(Some(&self.socket), &self.target.remote(argv));
        command.stdin(Stdio::piped());
        run(command, Some(input), argv).await
    }

    /// Closes the master and removes the work directory.
    pub(crate) async fn close(mut self) {
        let _ = tokio::process::Command::new("ssh")
            .args(["-F", "none", "-o", "BatchMode=yes", "-S"])
            .arg(&self.socket)
            .args(["-O", "exit", "--", &self.target.host])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .status()
            .await;
        self.closed = true;
        live().remove(&self.id);
        self.dir.take();
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // A deploy future dropped half-way (cancelled, or its task aborted): close the master anyway.
        if !self.closed {
            live().remove(&self.id);
            exit_master(&self.socket, &self.target.host);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    use super::{HostKeyPolicy, Target, check_host, check_user, shell_quote};

    fn target(policy: HostKeyPolicy, known_hosts: PathBuf) -> Target {
        Target {
            host: "203.0.113.7".into(),
            port: 2222,
            user: "root".into(),
            identity: PathBuf::from("/tmp/paranix-ssh-1-0/id"),
            host_key: policy,
            known_hosts,
            connect_timeout: Duration::from_secs(15),
        }
    }

    #[test]
    fn every_ssh_invocation_pins_the_host_key_and_the_identity_and_reads_no_configuration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let known = dir.path().join("known_hosts");
        let pinned = target(HostKeyPolicy::Pinned("ssh-ed25519 AAAA".into()), known.clone());
        let opts = pinned.nix_sshopts(Path::new("/tmp/paranix-ssh-1-0/s"));
        for expected in [
            "-F none",
            "-o BatchMode=yes",
            "-o StrictHostKeyChecking=yes",
            &format!("-o UserKnownHostsFile={}", known.display()),
            "-o GlobalKnownHostsFile=/dev/null",
            "-o IdentitiesOnly=yes",
            "-o IdentityAgent=none",
            "-o IdentityFile=/tmp/paranix-ssh-1-0/id",
            "-o ControlPath=/tmp/paranix-ssh-1-0/s",
            "-o Port=2222",
            "-o User=root",
        ] {
            assert!(opts.contains(expected), "{expected:?} missing from {opts}");
        }
        assert!(!opts.contains("StrictHostKeyChecking=no"), "{opts}");

        // Trust on first use: `accept-new` for the very first connection only; once a key is known, `yes`.
        let tofu = target(HostKeyPolicy::TrustOnFirstUse, known.clone());
        let first = tofu.nix_sshopts(Path::new("/s"));
        assert!(first.contains("StrictHostKeyChecking=accept-new"), "{first}");
        std::fs::write(&known, "[203.0.113.7]:2222 ssh-ed25519 AAAA\n").expect("write");
        let later = tofu.nix_sshopts(Path::new("/s"));
        assert!(later.contains("StrictHostKeyChecking=yes"), "{later}");
    }

    #[test]
    fn hosts_that_ssh_would_read_as_options_or_users_are_refused() {
        for bad in ["-oProxyCommand=touch /tmp/x", "a b", "root@h", "h\nx", "", "localhost", "h;x", "$(x)"] {
            assert!(check_host(bad).is_err(), "{bad:?}");
        }
        for good in ["203.0.113.7", "ec2-1-2-3-4.compute.amazonaws.com", "2001:db8::1", "printerfacts"] {
            assert!(check_host(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn user_names_are_posix_names() {
        for bad in ["-l", "Root", "a b", "", "x@y", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"] {
            assert!(check_user(bad).is_err(), "{bad:?}");
        }
        for good in ["root", "deploy", "_svc", "ci-bot2"] {
            assert!(check_user(good).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn arguments_are_quoted_once_for_the_remote_shell() {
        assert_eq!(shell_quote("/nix/store/abc-x"), "/nix/store/abc-x");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b;c"), "'a b;c'");
    }
}
