//! What a deploy leaves on the host and how the deployer and the host agree: the scripts paranix runs there
//! (constants: every value arrives as an argument, quoted once) and the markers they keep in `/run/paranix`.
//!
//! One deploy, id `<id>`, is one detached script ([`DEPLOY`]). For `switch` and `test` it activates the new
//! system with `switch-to-configuration test`, which leaves the boot default alone, and then waits for a
//! decision; only once the deploy is confirmed does a `switch` make the new system the boot default (profile,
//! then `switch-to-configuration boot`). So whatever happens before the confirmation (a rollback, a lost
//! connection, a crash or a reboot of the host) leaves the host booting the last confirmed system: `/run` is a
//! tmpfs and forgets the watchdog at a reboot, and the boot default never pointed at the unconfirmed system.
//!
//! Exactly one decision is taken, by whoever first creates the directory `decided-<id>` (`mkdir` is atomic):
//!
//! - the deployer ([`DECIDE`] `confirmed`) after a fresh login and the health checks passed;
//! - the script itself (`watchdog`) when the confirmation window, counted from the end of activation, ran out;
//! - the script on the deployer's request (`deployer`, the file `rollback-now-<id>`) after a failed check;
//! - a later deploy's script (`cancelled-by-<its id>`), which takes over the host once it runs itself;
//! - the script right after a failed activation (`activation-failed`), a failure that changed nothing
//!   (`nothing-changed`), an exit 100 (`reboot-required`, `not-activated`), or a `boot` deploy (`boot`,
//!   `boot-failed`).
//!
//! A rollback is done by the script (detached as the forward switch was), never by an SSH session: a deployer
//! that loses the host mid-rollback leaves it running. Its result is `rolled-back-<id>`. One deploy script runs
//! on a host at a time (`flock` on `/run/paranix/lock`, held for the script's life).
//!
//! Markers (each written whole: to a temporary name, then renamed):
//!
//! | file | written by | content |
//! |---|---|---|
//! | `armed-<id>` | the script, at start and when activation ends | `pid= action= toplevel= prev= window= [deadline=]` |
//! | `switch-<id>.status` | the script | the exit code of `switch-to-configuration test` (or `boot`) |
//! | `decided-<id>/by` | whoever decided | `confirmed`, `watchdog`, `deployer`, `cancelled-by-<id>`, ... |
//! | `rolled-back-<id>` | the script | `code=<exit of the switch back> prev=<system> running=<system> at=<unix time>` |
//! | `booted-<id>` | the script, after `confirmed` | `code=<exit of switch-to-configuration boot>` |
//! | `reboot-required` | the script | the toplevel installed as the boot default after an exit 100 |
//! | `deploy-<id>.log` | the script | everything it and `switch-to-configuration` printed |
//!
//! Tools are called by absolute path from a system's `sw/bin` (the running system's, else the new one's):
//! a detached unit does not get a login shell's PATH. The running system is kept from garbage collection
//! while the script may need it (`/nix/var/nix/gcroots/paranix-prev-<id>`).

use std::collections::BTreeMap;

/// Where the markers live on the host.
pub(crate) const MARKERS: &str = "/run/paranix";

/// The deploy script, run detached (`systemd-run`, or `setsid` with SIGHUP ignored) as root:
/// `sh -c DEPLOY paranix-deploy <id> <action> <toplevel> <prev> <window> <bin> <profile> <ids to take over>`.
///
/// Exit codes of `switch-to-configuration` (nixpkgs 26.05, `switch-to-configuration-ng/src/main.rs`): 0 done;
/// 1 usage, pre-switch checks ("Pre-switch checks failed"), boot loader, or an internal error (which may come
/// after units were stopped or after activation); 2 the activation script failed; 4 units failed; 100 the new
/// `init` is incompatible: nothing activated ("won't take effect until you reboot"); the errno of a failed lock
/// ("Could not acquire lock", taken non-blocking, before anything else); 101 a panic. Only the failures known to
/// change nothing (the lock, the pre-switch checks, usage) skip the switch back; every other failure, and an
/// exit 0 that did not leave `/run/current-system` on the new system, switches back.
pub(crate) const DEPLOY: &str = r#"id=$1 action=$2 toplevel=$3 prev=$4 window=$5 bin=$6 profile=$7 takeover=$8
d=/run/paranix
"$bin/mkdir" -p "$d" || exit 1
exec </dev/null >>"$d/deploy-$id.log" 2>&1 8>>"$d/lock"
trap '' HUP
put() { printf '%s\n' "$2" > "$d/$1.tmp" && "$bin/mv" -f "$d/$1.tmp" "$d/$1"; }
now() { "$bin/date" +%s; }
running() { "$bin/readlink" -f /run/current-system; }
decide() { "$bin/mkdir" "$d/decided-$id" 2>/dev/null && put "decided-$id/by" "$1"; }
ours() { [ -n "$1" ] && "$bin/grep" -q paranix-deploy "/proc/$1/cmdline" 2>/dev/null; }
put "deploy-$id.pid" "$$"
put "armed-$id" "pid=$$ action=$action toplevel=$toplevel prev=$prev window=$window"
finish() { "$bin/rm" -f "/nix/var/nix/gcroots/paranix-prev-$id"; exit 0; }
# The deploys this one replaces: their watchdogs go only now that this one runs. The previous system is the one
# a replaced deploy would have gone back to; when none was replaced (another decision came first), it is what
# runs once this script holds the host.
inherited=no
for old in $takeover; do
  if "$bin/mkdir" "$d/decided-$old" 2>/dev/null; then
    put "decided-$old/by" "cancelled-by-$id"
    inherited=yes
    oldpid=$("$bin/cat" "$d/deploy-$old.pid" 2>/dev/null)
    if ours "$oldpid"; then kill -TERM "-$oldpid" 2>/dev/null; fi
    "$bin/rm" -f "/nix/var/nix/gcroots/paranix-prev-$old"
  fi
done
if ! "$bin/flock" -w 30 8; then
  echo "paranix: another deploy script holds $d/lock"
  put "switch-$id.status" "busy"
  decide busy
  finish
fi
if [ "$inherited" = no ] && [ -n "$(running)" ]; then prev=$(running); fi
put "armed-$id" "pid=$$ action=$action toplevel=$toplevel prev=$prev window=$window"
if [ -n "$prev" ]; then "$bin/ln" -sfn "$prev" "/nix/var/nix/gcroots/paranix-prev-$id"; fi
# switch-to-configuration of system $1 with action $2, output to $3, retried while another switch holds its lock;
# with $4 = nocheck, without the pre-switch checks (NIXOS_NO_CHECK=1): going back to the system that ran must not
# be stopped by an inhibitor.
run_switch() {
  tries=0
  nocheck=
  if [ "${4:-}" = nocheck ]; then nocheck=1; fi
  while :; do
    NIXOS_NO_CHECK=$nocheck "$1/bin/switch-to-configuration" "$2" >"$d/$3" 2>&1 8>&-
    code=$?
    "$bin/cat" "$d/$3"
    if [ "$code" -ne 0 ] && [ "$tries" -lt 30 ] && "$bin/grep" -q 'Could not acquire lock' "$d/$3"; then
      tries=$((tries + 1))
      echo "paranix: another switch holds the lock; retrying in 2 s ($tries/30)"
      "$bin/sleep" 2
      continue
    fi
    return "$code"
  done
}
changed_nothing() { "$bin/grep" -q -e 'Could not acquire lock' -e 'Pre-switch checks failed' -e '^Usage:' "$d/$1"; }
# The boot default: the profile set to $1 and the boot loader written from it; on failure both go back.
make_boot_default() {
  before=$("$bin/readlink" "$profile")
  "$bin/nix-env" -p "$profile" --set "$1" || return 1
  run_switch "$1" boot "boot-$id.out" && return 0
  code=$?
  after=$("$bin/readlink" "$profile")
  if [ -n "$before" ] && [ "$after" != "$before" ]; then
    "$bin/nix-env" -p "$profile" --rollback
    gen=${after#system-}
    "$bin/nix-env" -p "$profile" --delete-generations "${gen%-link}"
    "$("$bin/readlink" -f "$profile")/bin/switch-to-configuration" boot >>"$d/boot-$id.out" 2>&1 8>&-
  fi
  return "$code"
}
roll_back() {
  echo "paranix: rolling back to $prev ($1)"
  if [ -z "$prev" ]; then put "rolled-back-$id" "code=none prev= running=$(running) at=$(now)"; return; fi
  run_switch "$prev" test "rollback-$id.out" nocheck
  put "rolled-back-$id" "code=$? prev=$prev running=$(running) at=$(now)"
}
if [ "$action" = boot ]; then
  make_boot_default "$toplevel"
  code=$?
  put "switch-$id.status" "$code"
  if [ "$code" = 0 ]; then
    decide boot
  else
    decide boot-failed
    put "rolled-back-$id" "code=nothing-changed prev=$prev running=$(running) at=$(now)"
  fi
  finish
fi
run_switch "$toplevel" test "switch-$id.out"
code=$?
put "switch-$id.status" "$code"
if [ "$code" = 100 ]; then
  # Nothing was activated. A switch still makes it the boot default, as `switch-to-configuration switch` would.
  if [ "$action" = switch ] && make_boot_default "$toplevel"; then
    put reboot-required "$toplevel"
    decide reboot-required
  else
    decide not-activated
  fi
  put "rolled-back-$id" "code=nothing-changed prev=$prev running=$(running) at=$(now)"
  finish
fi
if [ "$code" != 0 ] || [ "$(running)" != "$("$bin/readlink" -f "$toplevel")" ]; then
  if [ "$code" != 0 ] && [ "$(running)" != "$("$bin/readlink" -f "$toplevel")" ] && changed_nothing "switch-$id.out"; then
    decide nothing-changed && put "rolled-back-$id" "code=nothing-changed prev=$prev running=$(running) at=$(now)"
  else
    decide activation-failed && roll_back "activation failed with exit $code"
  fi
  finish
fi
deadline=$(( $(now) + window ))
put "armed-$id" "pid=$$ action=$action toplevel=$toplevel prev=$prev window=$window deadline=$deadline"
while [ ! -d "$d/decided-$id" ]; do
  if [ -e "$d/rollback-now-$id" ] || [ "$(now)" -ge "$deadline" ]; then
    who=watchdog
    if [ -e "$d/rollback-now-$id" ]; then who=deployer; fi
    if decide "$who"; then roll_back "$who"; finish; fi
  fi
  "$bin/sleep" 1
done
while [ ! -s "$d/decided-$id/by" ]; do "$bin/sleep" 0.2; done
if [ "$("$bin/cat" "$d/decided-$id/by")" = confirmed ] && [ "$action" = switch ]; then
  make_boot_default "$toplevel"
  put "booted-$id" "code=$?"
fi
finish
"#;

/// Takes the decision for deploy `$1` if nobody has (`sh -c DECIDE paranix-decide <id> <verdict> <bin>`), and
/// stops its script unless the verdict is `confirmed` (the script then makes a `switch` the boot default).
/// Exit 0: this verdict won (printed on stdout as `paranix-decided <verdict>`); exit 3: another decision was
/// there first, printed on stdout; exit 4: the host has no such deploy (it rebooted: `/run` is empty).
pub(crate) const DECIDE: &str = r#"id=$1 verdict=$2 bin=$3
d=/run/paranix
[ -e "$d/armed-$id" ] || { echo gone; exit 4; }
if ! "$bin/mkdir" "$d/decided-$id" 2>/dev/null; then
  tries=0
  while [ ! -s "$d/decided-$id/by" ] && [ "$tries" -lt 50 ]; do "$bin/sleep" 0.1; tries=$((tries + 1)); done
  "$bin/cat" "$d/decided-$id/by" 2>/dev/null || echo unknown
  exit 3
fi
printf '%s\n' "$verdict" > "$d/decided-$id/by"
if [ "$verdict" != confirmed ]; then
  pid=$("$bin/cat" "$d/deploy-$id.pid" 2>/dev/null)
  if [ -n "$pid" ] && "$bin/grep" -q paranix-deploy "/proc/$pid/cmdline" 2>/dev/null; then kill -TERM "-$pid" 2>/dev/null; fi
fi
echo "paranix-decided $verdict"
exit 0
"#;

/// Prints what the host runs and what is pending (`sh -c STATUS paranix-status`): `current=`, `profile=`,
/// `reboot-required=`, one `pending <id> <armed fields> status=<code or none> alive=<yes|no>` line per deploy
/// without a decision, and one `busy <id> by=<verdict>` line per decided deploy whose script still runs (a
/// rollback, or a confirmed switch being made the boot default). Uses the login shell's tools: it runs
/// attached, over SSH.
pub(crate) const STATUS: &str = r#"d=/run/paranix
echo "current=$(readlink -f /run/current-system 2>/dev/null)"
echo "profile=$(readlink -f /nix/var/nix/profiles/system 2>/dev/null)"
echo "reboot-required=$(cat "$d/reboot-required" 2>/dev/null)"
for armed in "$d"/armed-*; do
  [ -e "$armed" ] || continue
  id=${armed##*/armed-}
  alive=no
  pid=$(cat "$d/deploy-$id.pid" 2>/dev/null)
  if [ -n "$pid" ] && grep -q paranix-deploy "/proc/$pid/cmdline" 2>/dev/null; then alive=yes; fi
  if [ -d "$d/decided-$id" ]; then
    if [ "$alive" = yes ]; then echo "busy $id by=$(cat "$d/decided-$id/by" 2>/dev/null)"; fi
    continue
  fi
  status=$(cat "$d/switch-$id.status" 2>/dev/null)
  echo "pending $id $(cat "$armed") status=${status:-none} alive=$alive"
done
"#;

/// The host's state as [`STATUS`] prints it.
#[derive(Debug, Default)]
pub(crate) struct HostStatus {
    /// `/run/current-system`, resolved.
    pub(crate) current: Option<String>,
    /// The system profile, resolved.
    pub(crate) profile: Option<String>,
    /// The system an exit 100 installed as the boot default, if any since the last boot.
    pub(crate) reboot_required: Option<String>,
    /// Deploys without a decision.
    pub(crate) pending: Vec<Pending>,
    /// Decided deploys whose script still runs (a rollback, a boot default being written).
    pub(crate) busy: Vec<String>,
}

/// A deploy on the host without a decision yet: its script runs (or died).
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    pub(crate) id: String,
    pub(crate) toplevel: String,
    pub(crate) prev: String,
    /// The exit code of its switch, once it returned.
    pub(crate) status: Option<String>,
    /// When its watchdog rolls back (unix time), once activation returned.
    pub(crate) deadline: Option<u64>,
    /// Whether its script still runs.
    pub(crate) alive: bool,
}

fn store_path(value: &str) -> Option<String> {
    value.starts_with("/nix/store/").then(|| value.to_owned())
}

impl HostStatus {
    /// Parses [`STATUS`]'s output.
    pub(crate) fn parse(text: &str) -> HostStatus {
        let mut status = HostStatus::default();
        for line in text.lines() {
            if let Some(v) = line.strip_prefix("current=") {
                status.current = store_path(v);
            } else if let Some(v) = line.strip_prefix("profile=") {
                status.profile = store_path(v);
            } else if let Some(v) = line.strip_prefix("reboot-required=") {
                status.reboot_required = store_path(v);
            } else if let Some(rest) = line.strip_prefix("busy ") {
                status.busy.extend(rest.split_whitespace().next().map(str::to_owned));
            } else if let Some(rest) = line.strip_prefix("pending ") {
                let mut words = rest.split_whitespace();
                let Some(id) = words.next() else { continue };
                let fields: BTreeMap<&str, &str> = words.filter_map(|w| w.split_once('=')).collect();
                status.pending.push(Pending {
                    id: id.to_owned(),
                    toplevel: fields.get("toplevel").copied().unwrap_or_default().to_owned(),
                    prev: fields.get("prev").copied().unwrap_or_default().to_owned(),
                    status: fields.get("status").filter(|s| **s != "none").map(|s| (*s).to_owned()),
                    deadline: fields.get("deadline").and_then(|d| d.parse().ok()),
                    alive: fields.get("alive") == Some(&"yes"),
                });
            }
        }
        status
    }
}

/// A `rolled-back-<id>` marker.
#[derive(Debug)]
pub(crate) struct RolledBack {
    /// The exit code of the switch back (`nothing-changed` when nothing needed to go back, `none` with nothing
    /// to go back to).
    pub(crate) code: String,
    pub(crate) prev: String,
    /// What the host ran once the script was done.
    pub(crate) running: String,
}

impl RolledBack {
    pub(crate) fn parse(text: &str) -> Option<RolledBack> {
        let fields: BTreeMap<&str, &str> = text.split_whitespace().filter_map(|w| w.split_once('=')).collect();
        Some(RolledBack {
            code: (*fields.get("code")?).to_owned(),
            prev: fields.get("prev").copied().unwrap_or_default().to_owned(),
            running: fields.get("running").copied().unwrap_or_default().to_owned(),
        })
    }

    /// Whether the host runs the previous system again (or never stopped running it). Judged by what runs,
    /// not by the switch's exit code: a unit failing whatever the system (exit 4) does not make a rollback fail.
    pub(crate) fn succeeded(&self) -> bool {
        self.code == "nothing-changed" || (!self.prev.is_empty() && self.running == self.prev)
    }
}

#[cfg(test)]
mod tests {
    use super::{HostStatus, RolledBack};

    #[test]
    fn the_status_report_is_parsed() {
        let text = "current=/nix/store/aaa-new\nprofile=/nix/store/aaa-new\nreboot-required=\n\
                    pending 0123abcd pid=42 action=switch toplevel=/nix/store/aaa-new prev=/nix/store/bbb-old \
                    window=300 deadline=1764580000 status=0 alive=yes\n";
        let status = HostStatus::parse(text);
        assert_eq!(status.current.as_deref(), Some("/nix/store/aaa-new"));
        assert_eq!(status.reboot_required, None);
        let pending = &status.pending[0];
        assert_eq!((pending.id.as_str(), pending.prev.as_str()), ("0123abcd", "/nix/store/bbb-old"));
        assert_eq!(
            (pending.status.as_deref(), pending.deadline, pending.alive),
            (Some("0"), Some(1_764_580_000), true)
        );
        let in_progress =
            HostStatus::parse("pending x pid=1 toplevel=/nix/store/t prev= window=9 status=none alive=no");
        assert_eq!((in_progress.pending[0].status.as_deref(), in_progress.pending[0].deadline), (None, None));
    }

    #[test]
    fn a_rollback_marker_says_whether_the_host_is_back() {
        let back = |t: &str| RolledBack::parse(t).is_some_and(|r| r.succeeded());
        assert!(back("code=0 prev=/nix/store/x running=/nix/store/x at=1"));
        assert!(back("code=nothing-changed prev=/nix/store/x running=/nix/store/x at=1"));
        assert!(back("code=4 prev=/nix/store/x running=/nix/store/x at=1"), "a flapping unit, but back on x");
        assert!(!back("code=1 prev=/nix/store/x running=/nix/store/y at=1"));
        assert!(!back("code=none prev= running=/nix/store/y at=1"));
        assert!(RolledBack::parse("garbage").is_none());
    }
}
