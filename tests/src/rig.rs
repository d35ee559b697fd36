//! Real SSH targets for testing NixOS deploys without NixOS: each [`Target`](crate::rig::Target) is a
//! real `sshd` on a free loopback port, running in its own mount namespace where the target's own
//! directories are mounted on `/nix`, `/run`, `/root` and `/etc/nix` (and `/etc` is a copy-on-write
//! overlay of the builder's). Every command an SSH session runs there (`nix-store --serve`, `nix-env`,
//! `switch-to-configuration`, a `setsid` watchdog) sees the target's store, profiles and `/run`, never the
//! builder's.
//!
//! (Links in this module's docs are absolute because `lib.rs` documents the module too, and rustdoc then
//! resolves them from the crate root.)
//!
//! ```no_run
//! use paranix_tests::rig::Rig;
//!
//! let rig = Rig::new(); // panics with install instructions when sshd or nix is missing
//! let system = rig.build_system("gen1", "my-test"); // a fake NixOS toplevel in the builder's /nix
//! let target = rig.target("t1"); // sshd up, reachable, /nix verified to be the target's
//! assert!(!target.has_path(&system));
//! // Copy and switch as a deploy tool would (never use the bare host `localhost` with Nix: it skips SSH).
//! let copy = std::process::Command::new("nix-copy-closure")
//!     .env("NIX_SSHOPTS", target.nix_sshopts())
//!     .args(["--to", &target.destination(), &system])
//!     .status()
//!     .expect("run nix-copy-closure");
//! assert!(copy.success());
//! target.ssh(&format!(
//!     "nix-env -p /nix/var/nix/profiles/system --set {system} && {system}/bin/switch-to-configuration switch"
//! ));
//! assert_eq!(target.current_system().as_deref(), Some(system.as_str()));
//! ```
//!
//! The fake systems come from `tests/nix/fake-system.nix` (see that file for what its
//! `bin/switch-to-configuration` does and how to make it fail). The rig needs root, `openssh-server` and
//! `nix-bin` (Debian 12: `apt-get install --no-install-recommends openssh-server nix-bin`); it does not
//! need `/etc/nix/nix.conf`, since the builder's Nix gets
//! [`BUILDER_NIX_OPTIONS`](crate::rig::BUILDER_NIX_OPTIONS) on its command line.
//!
//! Processes are only ever ended by PID: a target's sshd, and on drop every process left in the target's
//! mount namespace (SSH sessions and whatever they detached). A test process that dies without dropping
//! its targets (killed, or a target kept in a `static`) leaves them running; the next
//! [`Rig::new`](crate::rig::Rig::new) kills such leftovers of dead processes. Only the std library is
//! used.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The sshd binary the targets run (it must be started by absolute path, because it re-executes itself).
pub const SSHD: &str = "/usr/sbin/sshd";

/// The options the builder's Nix needs on this machine without any `/etc/nix/nix.conf`: no `nixbld`
/// group (single-user Nix as root), no sandbox (the fake system's builders use the host's `/bin/sh` and
/// coreutils), no substituters (no internet). Pass them to every `nix-build` or `nix-store --realise`.
pub const BUILDER_NIX_OPTIONS: [&str; 9] =
    ["--option", "build-users-group", "", "--option", "sandbox", "false", "--option", "substituters", ""];

/// How long starting (or restarting) a target's sshd may take until a real SSH login works.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Set this environment variable (to anything) to keep the rig's directory after the test, for debugging.
/// The directory is also kept when the thread is panicking.
pub const KEEP_ENV: &str = "PARANIX_RIG_KEEP";

const INSTALL_HINT: &str =
    "run as root after `apt-get install --no-install-recommends openssh-server nix-bin` (Debian 12)";

/// The target's `/etc/nix/nix.conf`. Deliberately nothing beyond what builds as root need: like a stock
/// NixOS, the target has no experimental features enabled.
const TARGET_NIX_CONF: &str = "build-users-group =\nsandbox = false\nsubstituters =\n";

/// A file in the target's `/nix` whose content proves, over SSH, that a session sees the target's store.
const MARKER: &str = ".paranix-rig-target";

/// Run by `unshare --mount --propagation private /bin/sh -c NAMESPACE_SCRIPT paranix-rig <target dir>`:
/// sets up the namespace's mounts, then becomes the sshd (so the child's PID is the sshd's). The
/// overlay on `/etc` gives the target a private `/etc`, and with it a mount point for `/etc/nix` even
/// when the builder has no `/etc/nix`.
const NAMESPACE_SCRIPT: &str = r#"set -e
PATH=/usr/sbin:/usr/bin:/sbin:/bin
export PATH
t="$1"
mount --bind "$t/nix" /nix
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$t/etc-upper,workdir=$t/etc-work" /etc
mkdir -p /etc/nix
mount --bind "$t/etc-nix" /etc/nix
mount --bind "$t/run" /run
mount --bind "$t/root" /root
mount --bind "$t/home" /home
exec /usr/sbin/sshd -D -f "$t/sshd_config" -E "$t/sshd.log"
"#;

/// The remote command of the readiness check: the marker, the session's mount namespace, and the
/// target's Nix database (created here if missing, so `nix-store --serve` finds an initialised store).
const PROBE: &str = "cat /nix/.paranix-rig-target && readlink /proc/self/ns/mnt && nix-store --init";

/// A rig: a temporary directory (`/tmp/pnx-rig-<pid>-<n>`, short because SSH control sockets are
/// meant to live under it and Unix socket paths are limited to 108 bytes), a client key that every
/// [`Target`] of this rig authorises, and the builder side (fake systems in the builder's `/nix`).
///
/// The directory is removed when the rig and all its targets are dropped (targets share ownership of it,
/// so a target may outlive the `Rig` value), except while panicking or when [`KEEP_ENV`] is set.
#[derive(Debug)]
pub struct Rig {
    dir: Arc<RigDir>,
    client_key: PathBuf,
}

/// Owns the rig's directory; removes it when the last owner is dropped.
#[derive(Debug)]
struct RigDir {
    path: PathBuf,
}

impl Drop for RigDir {
    #[allow(clippy::print_stderr, reason = "tell the developer where the kept rig is")]
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os(KEEP_ENV).is_some() {
            eprintln!("paranix rig: keeping {} for debugging", self.path.display());
        } else {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

impl Rig {
    /// Creates the rig's directory and client key (`ssh-keygen -t ed25519`).
    ///
    /// Panics, saying how to install them, unless running as root with `/usr/sbin/sshd`, `ssh`,
    /// `ssh-keygen`, `unshare`, `nsenter`, `nix-build`, `nix-store` and `nix-copy-closure` available:
    /// tests that need the rig fail rather than skip. Also kills targets leaked by rigs of test processes
    /// that died without dropping them (see the module docs).
    pub fn new() -> Self {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        check_prerequisites();
        reap_leaked_targets();
        // Targets bind-mount their own /nix over this mount point; the first nix command creates it
        // anyway, but a target may start before anything was built.
        if !Path::new("/nix").exists() {
            fs::create_dir_all("/nix").expect("create /nix (the mount point of the targets' stores)");
        }
        let path = loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let path = PathBuf::from(format!("/tmp/pnx-rig-{}-{n}", std::process::id()));
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => break path,
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {} // left behind by a dead process
                Err(e) => panic!("create the rig directory {}: {e}", path.display()),
            }
        };
        let dir = Arc::new(RigDir { path });
        let client_key = dir.path.join("id_ed25519");
        keygen(&client_key, "paranix-rig-client");
        Rig { dir, client_key }
    }

    /// The rig's temporary directory (targets live in `<dir>/<name>`).
    pub fn dir(&self) -> &Path {
        &self.dir.path
    }

    /// The client's private key (ed25519, no passphrase), authorised for `root` on every target;
    /// the public key is next to it with `.pub` appended.
    pub fn client_key(&self) -> &Path {
        &self.client_key
    }

    /// `tests/nix/fake-system.nix`, for tests that call `nix-build` themselves.
    pub fn fake_system_nix() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("nix/fake-system.nix")
    }

    /// Builds a small fake NixOS system (3 packages of 16 KiB, 5 paths) in the builder's store and returns
    /// its toplevel store path. Another `tag` gives a new toplevel over the same dependencies (an update
    /// that copies one path); another `salt` gives a completely new closure (use a unique salt per test
    /// when "not yet on the target" matters). Both must be valid in store path names (`[A-Za-z0-9+-._?=]`).
    pub fn build_system(&self, tag: &str, salt: &str) -> String {
        self.build_system_with(tag, salt, 3, 16)
    }

    /// Like [`Rig::build_system`] with `n_pkgs` packages of `size_kib` KiB each (`n_pkgs + 2` paths).
    pub fn build_system_with(&self, tag: &str, salt: &str, n_pkgs: u32, size_kib: u32) -> String {
        self.build(tag, salt, n_pkgs, size_kib, "systemd")
    }

    /// Like [`Rig::build_system`], with another `init-interface-version`: switching to it from a system with
    /// the default one exits 100 (an incompatible init: it runs only after a reboot).
    pub fn build_system_with_init(&self, tag: &str, salt: &str, init_interface_version: &str) -> String {
        self.build(tag, salt, 3, 16, init_interface_version)
    }

    /// A system of `n_pkgs` 1 KiB packages whose store path names are as long as a NixOS closure's
    /// (`/nix/store/<hash>-<name>` of about 90 bytes): 2,000 of them are a closure too large for one command line.
    pub fn build_large_system(&self, tag: &str, salt: &str, n_pkgs: u32) -> String {
        self.build_named(tag, salt, n_pkgs, 1, "systemd", "fake-package-named-like-a-real-nixos-one")
    }

    /// Like [`Rig::build_system`], with the target's sshd settings of `sshd_conf` (sshd_config lines): its
    /// activation writes them to `/etc/ssh/sshd_config.d/paranix.conf` and reloads the target's sshd, as a NixOS
    /// switch reloads sshd when `/etc/ssh/sshd_config` changes.
    pub fn build_system_with_sshd(&self, tag: &str, salt: &str, sshd_conf: &str) -> String {
        let activate = format!(
            "/bin/mkdir -p /etc/ssh/sshd_config.d\nprintf '%s' '{}' > /etc/ssh/sshd_config.d/paranix.conf\n\
             /bin/sh /run/paranix-rig/reload-sshd\n",
            sshd_conf.replace('\'', "'\\''")
        );
        self.build_full(tag, salt, 3, 16, "systemd", "fake-pkg", &activate)
    }

    fn build(&self, tag: &str, salt: &str, n_pkgs: u32, size_kib: u32, init: &str) -> String {
        self.build_named(tag, salt, n_pkgs, size_kib, init, "fake-pkg")
    }

    fn build_named(&self, tag: &str, salt: &str, n_pkgs: u32, size_kib: u32, init: &str, name: &str) -> String {
        self.build_full(tag, salt, n_pkgs, size_kib, init, name, "")
    }

    #[allow(clippy::too_many_arguments)]
    fn build_full(
        &self,
        tag: &str,
        salt: &str,
        n_pkgs: u32,
        size_kib: u32,
        init: &str,
        name: &str,
        activate: &str,
    ) -> String {
        let nix = Self::fake_system_nix();
        let output = Command::new("nix-build")
            .arg(&nix)
            .args(["--argstr", "tag", tag, "--argstr", "salt", salt, "--argstr", "initInterfaceVersion", init])
            .args(["--argstr", "pkgName", name, "--argstr", "activate", activate])
            .args(["--arg", "nPkgs", &n_pkgs.to_string(), "--arg", "sizeKiB", &size_kib.to_string()])
            .arg("--no-out-link")
            .args(BUILDER_NIX_OPTIONS)
            .stdin(Stdio::null())
            .output()
            .expect("run nix-build");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let path = stdout.lines().last().unwrap_or_default().trim().to_owned();
        assert!(
            output.status.success() && path.starts_with('/'),
            "nix-build {} (tag {tag:?}, salt {salt:?}) failed ({}):\n{}",
            nix.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        path
    }

    /// The closure of a store path in the builder's store (`nix-store -q --requisites`), sorted.
    pub fn closure(&self, path: &str) -> Vec<String> {
        let output = Command::new("nix-store")
            .args(["-q", "--requisites", path])
            .stdin(Stdio::null())
            .output()
            .expect("run nix-store -q --requisites");
        assert!(
            output.status.success(),
            "nix-store -q --requisites {path} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let mut paths: Vec<String> = String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect();
        paths.sort();
        paths
    }

    /// Starts a target named `name` (letters, digits, `-` and `_`; unique within the rig) and returns
    /// once a real SSH login as root works with strict host key checking and the session's `/nix` is
    /// verified to be the target's. Its Nix database is initialised and its nix.conf has
    /// `build-users-group =`, `sandbox = false` and `substituters =`. Panics with the tail of the sshd
    /// log if it does not come up within [`START_TIMEOUT`].
    pub fn target(&self, name: &str) -> Target {
        assert!(
            !name.is_empty()
                && name.len() <= 32
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "invalid target name {name:?}: use up to 32 letters, digits, '-' and '_'"
        );
        let dir = self.dir.path.join(name);
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("create {} (target names must be unique): {e}", dir.display()));
        for sub in ["nix/store", "nix/var/nix", "etc-nix", "etc-upper", "etc-work", "run/sshd", "home"] {
            fs::create_dir_all(dir.join(sub)).unwrap_or_else(|e| panic!("create {sub} in {}: {e}", dir.display()));
        }
        fs::DirBuilder::new().mode(0o700).recursive(true).create(dir.join("root/.ssh")).expect("create root/.ssh");
        let nonce = format!(
            "{name} {} {:?}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
        );
        fs::write(dir.join("nix").join(MARKER), format!("{nonce}\n")).expect("write the target marker");
        fs::write(dir.join("etc-nix/nix.conf"), TARGET_NIX_CONF).expect("write the target's nix.conf");
        fs::copy(self.client_key.with_extension("pub"), dir.join("root/.ssh/authorized_keys"))
            .expect("write the target's authorized_keys");
        keygen(&dir.join("ssh_host_ed25519_key"), name);

        let mut target = Target {
            name: name.to_owned(),
            port: 0,
            dir,
            client_key: self.client_key.clone(),
            marker: nonce,
            sshd: None,
            mnt_ns: None,
            _rig: Arc::clone(&self.dir),
        };
        // Another process may take the free port before sshd binds it: then try another one.
        for attempt in 1..=5 {
            target.port = crate::free_port();
            target.write_sshd_config();
            target.write_known_hosts();
            let child = target.spawn(
                Command::new("unshare")
                    .args(["--mount", "--propagation", "private", "/bin/sh", "-c", NAMESPACE_SCRIPT, "paranix-rig"])
                    .arg(&target.dir),
            );
            target.sshd = Some(child);
            match target.wait_ready() {
                Ok(()) => return target,
                Err(_) if attempt < 5 && target.log_tail().contains("Address already in use") => {}
                Err(why) => panic!(
                    "target {name}: sshd did not start ({why}); {}:\n{}",
                    target.dir.join("sshd.log").display(),
                    target.log_tail()
                ),
            }
        }
        unreachable!("the last attempt returns or panics")
    }
}

impl Default for Rig {
    fn default() -> Self {
        Self::new()
    }
}

/// One SSH target of a [`Rig`]: `root@127.0.0.1:<port>`, an sshd in its own mount namespace, with its
/// state in [`Target::dir`]: `nix/` (its `/nix`), `run/` (its `/run`), `root/` (its `/root`), `etc-nix/`
/// (its `/etc/nix`), `etc-upper/` (its writes to `/etc`), `sshd.log`, `known_hosts`.
///
/// Dropping it kills, by PID, its sshd and every process still in its mount namespace (SSH sessions,
/// detached processes such as a `setsid` rollback watchdog), and waits for them to be gone.
#[derive(Debug)]
pub struct Target {
    name: String,
    port: u16,
    dir: PathBuf,
    client_key: PathBuf,
    marker: String,
    /// The listening sshd (our child: `unshare`/`nsenter` exec into it), while running.
    sshd: Option<Child>,
    /// The target's mount namespace: an open handle (which keeps it alive and its id unique, so it can be
    /// re-entered after [`Target::kill_sshd`] and trusted when looking for processes to kill) and its id,
    /// e.g. `mnt:[4026532801]`.
    mnt_ns: Option<(File, String)>,
    _rig: Arc<RigDir>,
}

impl Target {
    /// The name given to [`Rig::target`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The loopback port sshd listens on (it stays the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address sshd listens on: `127.0.0.1`. (Never hand Nix the bare host `localhost`: Nix treats it
    /// as "no SSH at all" and would act on the builder's store.)
    pub fn addr(&self) -> String {
        Ipv4Addr::LOCALHOST.to_string()
    }

    /// The SSH destination, `root@127.0.0.1` (the port goes in [`Target::ssh_options`]: Nix 2.8 does not
    /// accept `host:port` in store URIs).
    pub fn destination(&self) -> String {
        format!("root@{}", self.addr())
    }

    /// The target's directory, `<rig dir>/<name>`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current host public key, `ssh-ed25519 AAAA...` (no comment).
    pub fn host_public_key(&self) -> String {
        let line = fs::read_to_string(self.dir.join("ssh_host_ed25519_key.pub")).expect("read the host public key");
        line.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    }

    /// The `known_hosts` line for the current host key: `[127.0.0.1]:PORT ssh-ed25519 AAAA...`.
    pub fn known_hosts_line(&self) -> String {
        format!("[{}]:{} {}", self.addr(), self.port, self.host_public_key())
    }

    /// A `known_hosts` file holding [`Target::known_hosts_line`]; rewritten by
    /// [`Target::rotate_host_key`] (save the old line first to test a host key mismatch).
    pub fn known_hosts_file(&self) -> PathBuf {
        self.dir.join("known_hosts")
    }

    /// The client options to reach this target: `-F none -p PORT -i KEY -o IdentitiesOnly=yes
    /// -o UserKnownHostsFile=FILE -o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=5`.
    pub fn ssh_options(&self) -> Vec<String> {
        let mut options = vec!["-F".to_owned(), "none".to_owned(), "-p".to_owned(), self.port.to_string()];
        options.push("-i".to_owned());
        options.push(self.client_key.display().to_string());
        for option in [
            "IdentitiesOnly=yes".to_owned(),
            format!("UserKnownHostsFile={}", self.known_hosts_file().display()),
            "StrictHostKeyChecking=yes".to_owned(),
            "BatchMode=yes".to_owned(),
            "ConnectTimeout=5".to_owned(),
        ] {
            options.push("-o".to_owned());
            options.push(option);
        }
        options
    }

    /// [`Target::ssh_options`] joined for `NIX_SSHOPTS` (which Nix splits on whitespace, unquoted; the
    /// rig's paths contain no spaces). Use with the destination [`Target::destination`].
    pub fn nix_sshopts(&self) -> String {
        self.ssh_options().join(" ")
    }

    /// An `ssh` command (with [`Target::ssh_options`] and stdin from `/dev/null`) that runs `remote`
    /// (a shell command line) on the target as root.
    pub fn ssh_command(&self, remote: &str) -> Command {
        let mut command = Command::new("ssh");
        command.args(self.ssh_options()).arg(self.destination()).arg(remote).stdin(Stdio::null());
        command
    }

    /// Runs `remote` on the target and returns its stdout; panics with its stderr when it fails.
    pub fn ssh(&self, remote: &str) -> String {
        let output = self.ssh_command(remote).output().expect("run ssh");
        check_output(&output, &format!("ssh {} {remote:?}", self.name));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A path of the target's store, seen from the builder: `/nix/store/...` -> `<dir>/nix/store/...`.
    pub fn store_file(&self, store_path: &str) -> PathBuf {
        self.dir.join("nix/store").join(store_path.strip_prefix("/nix/store/").unwrap_or(store_path))
    }

    /// Appends `public_key` to root's `~/.ssh/authorized_keys` on the target, as nixpkgs' `apply-ec2-data`
    /// writes an EC2 instance's launch key there at boot.
    pub fn add_root_key(&self, public_key: &str) {
        let mut file = OpenOptions::new()
            .append(true)
            .open(self.dir.join("root/.ssh/authorized_keys"))
            .expect("open root's authorized_keys");
        std::io::Write::write_all(&mut file, format!("{}\n", public_key.trim()).as_bytes())
            .expect("append to root's authorized_keys");
    }

    /// The system the target's system profile (`/nix/var/nix/profiles/system`) points to, resolved.
    pub fn profile(&self) -> Option<String> {
        let profiles = self.dir.join("nix/var/nix/profiles");
        let mut link = read_link(&profiles.join("system"))?;
        for _ in 0..8 {
            if link.starts_with("/nix/store/") {
                return Some(link);
            }
            link = read_link(&profiles.join(&link))?;
        }
        None
    }

    /// A file of the target's `/run/paranix` (a deploy's markers), if it exists.
    pub fn marker(&self, name: &str) -> Option<String> {
        fs::read_to_string(self.dir.join("run/paranix").join(name)).ok()
    }

    /// The names in the target's `/run/paranix`, sorted.
    pub fn markers(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.dir.join("run/paranix"))
            .map(|d| d.filter_map(Result::ok).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Makes the target's `switch-to-configuration` refuse to switch in its pre-switch checks, naming `what` as
    /// the critical change (NixOS 26.05's switch inhibitors), until [`Target::clear_inhibitor`].
    pub fn inhibit_switch(&self, what: &str) {
        self.write_state("inhibit", what);
    }

    /// Makes the next `switch-to-configuration` stop a unit and then fail (exit 1) before activating, as an
    /// internal error after the units were stopped does: `/run/current-system` does not move, but the host
    /// changed.
    pub fn fail_after_stopping_units(&self) {
        self.write_state("fail-after-stopping-units", "1");
    }

    /// Makes every boot-loader write on the target fail (`switch-to-configuration boot|switch` exit 1, "Failed to
    /// install bootloader": a full `/boot`, say) while `failing`.
    pub fn fail_bootloader(&self, failing: bool) {
        if failing {
            self.write_state("fail-bootloader", "1");
        } else {
            let _ = fs::remove_file(self.dir.join("run/fake-nixos/fail-bootloader"));
        }
    }

    /// Lifts [`Target::inhibit_switch`].
    pub fn clear_inhibitor(&self) {
        let _ = fs::remove_file(self.dir.join("run/fake-nixos/inhibit"));
    }

    /// Makes every activation on the target take `seconds` (a slow service start).
    pub fn slow_activation(&self, seconds: u32) {
        self.write_state("activation-seconds", &seconds.to_string());
    }

    fn write_state(&self, name: &str, text: &str) {
        let state = self.dir.join("run/fake-nixos");
        fs::create_dir_all(&state).expect("create the target's /run/fake-nixos");
        fs::write(state.join(name), format!("{text}\n")).unwrap_or_else(|e| panic!("write {name}: {e}"));
    }

    /// Holds the target's switch lock (`/run/nixos/switch-to-configuration.lock`, as a running
    /// `switch-to-configuration` does) for `seconds`, from a process in the target's namespace.
    pub fn hold_switch_lock(&self, seconds: u32) {
        self.ssh(&format!(
            "mkdir -p /run/nixos && setsid -f flock /run/nixos/switch-to-configuration.lock sleep {seconds} \
             </dev/null >/dev/null 2>&1; for i in $(seq 50); do flock -n /run/nixos/switch-to-configuration.lock \
             true || exit 0; sleep 0.05; done; exit 1"
        ));
    }

    /// Makes the target look like a host running systemd (`/run/systemd/system` exists), so deploys start
    /// their work through `systemd-run` (the fake in the deployed system's `sw/bin`, which records the units it
    /// started in `/run/fake-systemd/started`).
    pub fn pretend_systemd(&self) {
        fs::create_dir_all(self.dir.join("run/systemd/system")).expect("create run/systemd/system");
    }

    /// The transient units the fake `systemd-run` started, in order.
    pub fn systemd_units(&self) -> Vec<String> {
        fs::read_to_string(self.dir.join("run/fake-systemd/started"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Adds a non-root login `user` (key: the rig's client key) with passwordless `sudo`, and runs a Nix daemon
    /// in the target so the user's Nix commands go through it, as on a multi-user NixOS. With `trusted`, the
    /// daemon lists the user in `trusted-users` (it may add unsigned paths), as paranix's `deployUser` does;
    /// without, it refuses them ("lacks a valid signature"). Needs `sudo` (Debian: `apt-get install sudo`).
    pub fn add_sudo_user(&self, user: &str, trusted: bool) {
        assert!(Path::new("/usr/bin/sudo").is_file(), "the rig's sudo user needs /usr/bin/sudo: apt-get install sudo");
        let trusted_users = if trusted { format!("root {user}") } else { "root".to_owned() };
        let conf = format!("{}trusted-users = {trusted_users}\n", TARGET_NIX_CONF);
        fs::write(self.dir.join("etc-nix/nix.conf"), conf).expect("write the target's nix.conf");
        let key = fs::read_to_string(self.client_key.with_extension("pub")).expect("read the client key");
        self.ssh(&format!(
            "useradd -m -d /home/{user} -s /bin/sh {user} && usermod -p '*' {user} && mkdir -p /home/{user}/.ssh && \
             printf '%s' '{key}' > /home/{user}/.ssh/authorized_keys && chown -R {user}: /home/{user} && \
             echo '{user} ALL=(ALL) NOPASSWD: ALL' > /etc/sudoers.d/{user} && chmod 0440 /etc/sudoers.d/{user} && \
             setsid -f nix-daemon </dev/null >/run/nix-daemon.log 2>&1 && \
             for i in $(seq 100); do [ -S /nix/var/nix/daemon-socket/socket ] && exit 0; sleep 0.05; done; exit 1",
            key = key.trim()
        ));
    }

    /// Where the target's `/run/current-system` points (read from the builder side), if it exists.
    pub fn current_system(&self) -> Option<String> {
        read_link(&self.dir.join("run/current-system"))
    }

    /// The system the fake `switch-to-configuration` last made the boot default (`switch` or `boot`).
    pub fn boot_system(&self) -> Option<String> {
        read_link(&self.dir.join("run/fake-nixos/boot-system"))
    }

    /// The fake `switch-to-configuration`'s log: one line per call, `ACTION TOPLEVEL`, with ` exit=CODE`
    /// appended when it failed; empty before the first call.
    pub fn switch_log(&self) -> String {
        fs::read_to_string(self.dir.join("run/fake-nixos/switch.log")).unwrap_or_default()
    }

    /// Makes the next `switch-to-configuration switch|boot|test` on the target exit with `code` (taken modulo
    /// 256 by the shell), at the point NixOS 26.05's would (see `tests/nix/fake-system.nix`): 1 before anything
    /// is activated (a pre-switch check), 2 after `/run/current-system` moved (the activation script failed
    /// half-way), 4 and others after a complete activation (units failed), 100 before activation (an
    /// incompatible init: the boot default moved, nothing else).
    pub fn fail_next_switch(&self, code: i32) {
        let state = self.dir.join("run/fake-nixos");
        fs::create_dir_all(&state).expect("create the target's /run/fake-nixos");
        fs::write(state.join("fail-next-switch"), format!("{code}\n")).expect("write fail-next-switch");
    }

    /// Whether `store_path` (`/nix/store/...`, or a path inside one) exists in the target's store.
    pub fn has_path(&self, store_path: &str) -> bool {
        let relative = store_path.strip_prefix("/nix/store/").unwrap_or(store_path).trim_start_matches('/');
        fs::symlink_metadata(self.dir.join("nix/store").join(relative)).is_ok()
    }

    /// The number of store paths in the target's store (`.drv` files included, lock files not).
    pub fn store_path_count(&self) -> usize {
        fs::read_dir(self.dir.join("nix/store"))
            .expect("read the target's store")
            .filter_map(Result::ok)
            .filter(|entry| {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                !name.starts_with('.') && !name.ends_with(".lock")
            })
            .count()
    }

    /// The PID of the listening sshd, while it runs.
    pub fn sshd_pid(&self) -> Option<u32> {
        self.sshd.as_ref().map(Child::id)
    }

    /// The PIDs of all live processes in the target's mount namespace: the sshd, SSH sessions and what
    /// they started, including detached (`setsid`) processes.
    pub fn namespace_pids(&self) -> Vec<u32> {
        self.mnt_ns.as_ref().map(|(_, id)| pids_in_mount_namespace(id)).unwrap_or_default()
    }

    /// Takes the target off the network: kills (by PID, SIGKILL) the listening sshd and its connection
    /// processes, so open connections (including SSH control masters) drop, and waits until the port
    /// refuses connections. Other processes in the namespace (a detached watchdog, for instance) keep
    /// running, and the target's state stays. No-op if sshd is not running.
    pub fn kill_sshd(&mut self) {
        let Some(mut listener) = self.sshd.take() else { return };
        let connections: Vec<u32> = self
            .namespace_pids()
            .into_iter()
            .filter(|&pid| {
                pid != listener.id() && read_link(Path::new(&format!("/proc/{pid}/exe"))).as_deref() == Some(SSHD)
            })
            .collect();
        kill_pids(&connections);
        let _ = listener.kill();
        let _ = listener.wait();
        wait_gone(&connections, Duration::from_secs(5));
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect_timeout(&self.socket_addr(), Duration::from_millis(200)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "target {}: port {} still open after killing sshd",
                self.name,
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts sshd again (killing it first if it runs) in the same mount namespace, on the same port with
    /// the same host key, and waits until a login works (panics otherwise).
    pub fn restart_sshd(&mut self) {
        self.kill_sshd();
        let (ns_file, _) = self.mnt_ns.as_ref().expect("the target's mount namespace");
        let ns_path = format!("/proc/{}/fd/{}", std::process::id(), ns_file.as_raw_fd());
        let child = self.spawn(
            Command::new("nsenter")
                .arg(format!("--mount={ns_path}"))
                .args([SSHD, "-D", "-f"])
                .arg(self.dir.join("sshd_config"))
                .arg("-E")
                .arg(self.dir.join("sshd.log")),
        );
        self.sshd = Some(child);
        if let Err(why) = self.wait_ready() {
            panic!("target {}: sshd did not restart ({why}):\n{}", self.name, self.log_tail());
        }
    }

    /// Replaces the host key with a new one, rewrites [`Target::known_hosts_file`] and restarts sshd:
    /// clients holding the old key must now refuse the target.
    pub fn rotate_host_key(&mut self) {
        self.kill_sshd();
        let key = self.dir.join("ssh_host_ed25519_key");
        fs::remove_file(&key).expect("remove the old host key");
        fs::remove_file(key.with_extension("pub")).expect("remove the old host public key");
        keygen(&key, &self.name);
        self.write_known_hosts();
        self.restart_sshd();
    }

    fn socket_addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Writes `sshd_config`. Only curve25519 key exchange is offered: OpenSSH 9.2's default
    /// sntrup761x25519 costs about 75 ms more per login on this 2-core machine (130 vs 210 ms), and the
    /// key exchange does not matter to what the targets test.
    fn write_sshd_config(&self) {
        let t = self.dir.display();
        // The system a deploy activates may bring its own login settings (tests/nix/fake-printerfacts-host.nix
        // writes /etc/ssh/sshd_config.d/paranix.conf, in the target's /etc): included first, they win over the
        // rig's defaults below (sshd takes the first value it reads for each keyword).
        let config = format!(
            "Include /etc/ssh/sshd_config.d/*.conf
Port {port}
ListenAddress 127.0.0.1
HostKey {t}/ssh_host_ed25519_key
PidFile {t}/sshd.pid
AuthorizedKeysFile .ssh/authorized_keys
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PrintMotd no
PrintLastLog no
MaxSessions 64
MaxStartups 64:30:128
Subsystem sftp internal-sftp
LogLevel VERBOSE
KexAlgorithms curve25519-sha256,curve25519-sha256@libssh.org
",
            port = self.port
        );
        fs::write(self.dir.join("sshd_config"), config).expect("write sshd_config");
        // How a system's activation reloads this sshd (SIGHUP: it re-executes itself, reads its configuration
        // again and listens anew; open sessions stay), waiting until it listens again: `sh
        // /run/paranix-rig/reload-sshd` on the target.
        let reload = format!(
            r#"log={t}/sshd.log
before=$(/bin/grep -c 'Server listening' "$log")
/bin/kill -HUP "$(/bin/cat {t}/sshd.pid)" || exit 1
i=0
until [ "$(/bin/grep -c 'Server listening' "$log")" -gt "$before" ]; do
  i=$((i + 1))
  [ "$i" -gt 200 ] && exit 1
  /bin/sleep 0.05
done
"#
        );
        fs::create_dir_all(self.dir.join("run/paranix-rig")).expect("create run/paranix-rig");
        fs::write(self.dir.join("run/paranix-rig/reload-sshd"), reload).expect("write the reload script");
        // Where the listening sshd's pid is, for the fake `systemctl reboot` (which spares it).
        fs::write(self.dir.join("run/paranix-rig/sshd-pid-file"), format!("{t}/sshd.pid"))
            .expect("write the pid file name");
    }

    fn write_known_hosts(&self) {
        fs::write(self.known_hosts_file(), format!("{}\n", self.known_hosts_line())).expect("write known_hosts");
    }

    /// Spawns the sshd (through `unshare` or `nsenter`, which exec into it), logging to `sshd.log`.
    fn spawn(&self, command: &mut Command) -> Child {
        let log = OpenOptions::new().create(true).append(true).open(self.dir.join("sshd.log")).expect("open sshd.log");
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the sshd.log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn the target's sshd")
    }

    /// Waits until a real login works and the session's `/nix` and mount namespace are the target's;
    /// records the namespace on the first start. `Err` (with the sshd killed) if sshd exits or the
    /// timeout passes.
    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last_error = String::from("nothing listens on the port");
        loop {
            let child = self.sshd.as_mut().expect("a started sshd");
            if let Ok(Some(status)) = child.try_wait() {
                self.sshd = None;
                return Err(format!("sshd exited: {status}"));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.sshd = None;
                return Err(format!("timed out after {START_TIMEOUT:?}; last: {last_error}"));
            }
            if TcpStream::connect_timeout(&self.socket_addr(), Duration::from_millis(200)).is_ok() {
                let output = self.ssh_command(PROBE).output().expect("run ssh");
                if output.status.success() {
                    return self.check_probe(&String::from_utf8_lossy(&output.stdout));
                }
                last_error = format!("ssh: {}", String::from_utf8_lossy(&output.stderr).trim());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Checks the readiness probe's output (see [`PROBE`]) and records the mount namespace.
    fn check_probe(&mut self, stdout: &str) -> Result<(), String> {
        let mut lines = stdout.lines();
        let (marker, session_ns) = (lines.next().unwrap_or_default(), lines.next().unwrap_or_default());
        let pid = self.sshd.as_ref().expect("a started sshd").id();
        let sshd_ns = read_link(Path::new(&format!("/proc/{pid}/ns/mnt"))).unwrap_or_default();
        let own_ns = read_link(Path::new("/proc/self/ns/mnt")).expect("read the test's own mount namespace");
        let problem = if marker != self.marker {
            Some(format!("the session's /nix is not the target's (marker {marker:?}, want {:?})", self.marker))
        } else if session_ns != sshd_ns || session_ns == own_ns || !session_ns.starts_with("mnt:[") {
            Some(format!("session namespace {session_ns}, sshd's {sshd_ns}, the builder's {own_ns}"))
        } else {
            match &self.mnt_ns {
                Some((_, id)) if *id != session_ns => Some(format!("sshd restarted in {session_ns}, not in {id}")),
                Some(_) => None,
                None => {
                    // The sshd is our child and has just answered from its namespace: hold that namespace.
                    let file = File::open(format!("/proc/{pid}/ns/mnt")).expect("open the target's mount namespace");
                    let held = read_link(Path::new(&format!("/proc/self/fd/{}", file.as_raw_fd())));
                    if held.as_deref() == Some(session_ns) {
                        self.mnt_ns = Some((file, session_ns.to_owned()));
                        None
                    } else {
                        Some(format!("opened namespace {held:?}, want {session_ns}"))
                    }
                }
            }
        };
        match problem {
            None => Ok(()),
            Some(problem) => {
                if let Some(mut child) = self.sshd.take() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                Err(problem)
            }
        }
    }

    fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some(listener) = &mut self.sshd {
            let _ = listener.kill();
        }
        if let Some((_, id)) = &self.mnt_ns {
            // Never the test's own namespace (checked when recording it; checked again, to be sure).
            if read_link(Path::new("/proc/self/ns/mnt")).as_deref() != Some(id.as_str()) {
                kill_mount_namespace(id);
            }
        }
        if let Some(mut listener) = self.sshd.take() {
            let _ = listener.wait();
        }
        self.mnt_ns = None;
    }
}

/// Kills the targets that rigs of dead test processes left running (a test binary that was killed, or
/// that leaked a `Target`, never ran its `Drop`): for each `/tmp/pnx-rig-<pid>-<n>/<name>` whose `<pid>`
/// is gone, the sshd in `sshd.pid` (only if its command line still names that target's `sshd_config`) and
/// every process in its mount namespace. The directories stay (they may have been kept for debugging).
fn reap_leaked_targets() {
    let Ok(entries) = fs::read_dir("/tmp") else { return };
    let own_ns = read_link(Path::new("/proc/self/ns/mnt"));
    for entry in entries.filter_map(Result::ok) {
        let file_name = entry.file_name();
        let Some(rest) = file_name.to_str().and_then(|name| name.strip_prefix("pnx-rig-")) else { continue };
        let Some(Ok(owner)) = rest.split('-').next().map(str::parse::<u32>) else { continue };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        let Ok(targets) = fs::read_dir(entry.path()) else { continue };
        for target in targets.filter_map(Result::ok) {
            let dir = target.path();
            let Some(pid) =
                fs::read_to_string(dir.join("sshd.pid")).ok().and_then(|pid| pid.trim().parse::<u32>().ok())
            else {
                continue;
            };
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let config = format!("-f {}/sshd_config ", dir.display());
            if !String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(&config) {
                continue;
            }
            match read_link(Path::new(&format!("/proc/{pid}/ns/mnt"))) {
                Some(ns) if Some(&ns) != own_ns.as_ref() => kill_mount_namespace(&ns),
                _ => kill_pids(&[pid]),
            }
        }
    }
}

/// Panics unless the rig's prerequisites are there.
fn check_prerequisites() {
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid = status.lines().find_map(|line| line.strip_prefix("Uid:")).and_then(|ids| ids.split_whitespace().next());
    assert!(uid == Some("0"), "the nix-ssh rig needs root (mount namespaces, bind mounts): {INSTALL_HINT}");
    assert!(Path::new(SSHD).is_file(), "the nix-ssh rig needs {SSHD}: {INSTALL_HINT}");
    let path = std::env::var_os("PATH").unwrap_or_default();
    for tool in ["ssh", "ssh-keygen", "unshare", "nsenter", "nix-build", "nix-store", "nix-copy-closure"] {
        assert!(
            std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()),
            "the nix-ssh rig needs `{tool}` in PATH: {INSTALL_HINT}"
        );
    }
}

/// `ssh-keygen -q -t ed25519 -N '' -C comment -f key`.
fn keygen(key: &Path, comment: &str) {
    let output = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(key)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen");
    check_output(&output, &format!("ssh-keygen -f {}", key.display()));
}

fn check_output(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn read_link(path: &Path) -> Option<String> {
    fs::read_link(path).ok().map(|target| target.display().to_string())
}

/// The live processes whose mount namespace is `id` (zombies have none and are not listed).
fn pids_in_mount_namespace(id: &str) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| read_link(Path::new(&format!("/proc/{pid}/ns/mnt"))).as_deref() == Some(id))
        .collect()
}

/// Kills every process in the mount namespace `id` (repeatedly, for up to 5 s, in case one forks) and
/// waits until none is left.
fn kill_mount_namespace(id: &str) {
    for _ in 0..50 {
        let pids = pids_in_mount_namespace(id);
        if pids.is_empty() {
            break;
        }
        kill_pids(&pids);
        wait_gone(&pids, Duration::from_millis(100));
    }
}

/// SIGKILL to each PID (by the shell's `kill`; PIDs already gone are ignored).
fn kill_pids(pids: &[u32]) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("/bin/sh")
        .args(["-c", "kill -KILL \"$@\" 2>/dev/null; exit 0", "kill"])
        .args(pids.iter().map(u32::to_string))
        .stdin(Stdio::null())
        .status();
}

/// Waits until none of `pids` is a live process (zombies count as gone).
fn wait_gone(pids: &[u32], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline
        && pids.iter().any(|pid| {
            fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|stat| stat.rsplit(')').next().is_some_and(|rest| !rest.trim_start().starts_with('Z')))
        })
    {
        std::thread::sleep(Duration::from_millis(20));
    }
}
