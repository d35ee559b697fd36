//! What a deploy leaves on the host and how the deployer and the host agree: the scripts paranix runs there
//! (constants: every value arrives as an argument, quoted once) and the markers they keep in `/run/paranix`
//! (a tmpfs: a reboot forgets a pending deploy, as it should, since it also forgets the running system).
//!
//! One deploy, id `<id>`, is one detached script ([`DEPLOY`]) that sets the profile, runs
//! `switch-to-configuration` and then, after a successful activation, waits for a decision. Exactly one
//! decision is taken, by whoever first creates the directory `decided-<id>` (`mkdir` is atomic):
//!
//! - the deployer ([`DECIDE`] `confirmed`) after a fresh login and the health checks passed;
//! - the script itself (`watchdog`) when the confirmation window, counted from the end of activation, ran out;
//! - the script on the deployer's request (`deployer`, the file `rollback-now-<id>`) after a failed check;
//! - another deploy (`cancelled-by-<id>`), which takes over the host;
//! - the script right after a failed activation (`activation-failed`), or after a failure before activation
//!   (`failed-before-activation`: only the profile moved, and goes back) or exit 100 (`reboot-required`).
//!
//! A rollback is done by the script (detached as the forward switch was), never by an SSH session: a deployer
//! that loses the host mid-rollback leaves it running. Its result is `rolled-back-<id>`.
//!
//! Markers (each written whole: to a temporary name, then renamed):
//!
//! | file | written by | content |
//! |---|---|---|
//! | `armed-<id>` | the script, at start and when activation ends | `pid= action= toplevel= prev= window= [deadline=]` |
//! | `switch-<id>.status` | the script | the exit code of `switch-to-configuration` |
//! | `decided-<id>/by` | whoever decided | `confirmed`, `watchdog`, `deployer`, `cancelled-by-<id>`, ... |
//! | `rolled-back-<id>` | the script | `code=<exit of the switch back> prev=<system> at=<unix time>` |
//! | `reboot-required` | the script | the toplevel installed as the boot default by an exit 100 |
//! | `deploy-<id>.log` | the script | everything it and `switch-to-configuration` printed |
//!
//! Tools are called by absolute path from a system's `sw/bin` (the running system's, else the new one's):
//! a detached unit does not get a login shell's PATH.

use std::collections::BTreeMap;

/// Where the markers live on the host.
pub(crate) const MARKERS: &str = "/run/paranix";

/// The deploy script, run detached (`systemd-run`, or `setsid` with SIGHUP ignored) as root:
/// `sh -c DEPLOY paranix-deploy <id> <action> <toplevel> <prev> <window> <bin> <profile>`.
///
/// Exit codes of `switch-to-configuration` (nixpkgs 26.05, `switch-to-configuration-ng/src/main.rs`): 0 done;
/// 1 usage, pre-switch checks ("Pre-switch checks failed"), boot loader, or an internal error; 2 the activation
/// script failed; 4 units failed; 100 the new `init` is incompatible: nothing activated, the boot loader already
/// points at the new system ("won't take effect until you reboot"); the errno of a failed lock ("Could not
/// acquire lock", taken non-blocking, before anything else); 101 a panic. Whether activation happened is read
/// from `/run/current-system` (which the activation script sets), not guessed from the code.
pub(crate) const DEPLOY: &str = r#"id=$1 action=$2 toplevel=$3 prev=$4 window=$5 bin=$6 profile=$7
d=/run/paranix
"$bin/mkdir" -p "$d" || exit 1
exec </dev/null >>"$d/deploy-$id.log" 2>&1
trap '' HUP
put() { printf '%s\n' "$2" > "$d/$1.tmp" && "$bin/mv" -f "$d/$1.tmp" "$d/$1"; }
now() { "$bin/date" +%s; }
running() { "$bin/readlink" -f /run/current-system; }
decide() { "$bin/mkdir" "$d/decided-$id" 2>/dev/null && put "decided-$id/by" "$1"; }
put "deploy-$id.pid" "$$"
put "armed-$id" "pid=$$ action=$action toplevel=$toplevel prev=$prev window=$window"
# switch-to-configuration of system $1 with action $2, retried while another switch holds the lock.
run_switch() {
  tries=0
  while :; do
    "$1/bin/switch-to-configuration" "$2" >"$d/switch-$id.out" 2>&1
    code=$?
    "$bin/cat" "$d/switch-$id.out"
    if [ "$code" -ne 0 ] && [ "$tries" -lt 30 ] && "$bin/grep" -q 'Could not acquire lock' "$d/switch-$id.out"; then
      tries=$((tries + 1))
      echo "paranix: another switch holds the lock; retrying in 2 s ($tries/30)"
      "$bin/sleep" 2
      continue
    fi
    return "$code"
  done
}
restore_profile() {
  if [ "$action" != test ] && [ -n "$prev" ]; then "$bin/nix-env" -p "$profile" --set "$prev"; fi
}
roll_back() {
  echo "paranix: rolling back to $prev ($1)"
  if [ -z "$prev" ]; then put "rolled-back-$id" "code=none prev= at=$(now)"; return; fi
  restore_profile
  back=switch
  if [ "$action" = test ]; then back=test; fi
  run_switch "$prev" "$back"
  put "rolled-back-$id" "code=$? prev=$prev at=$(now)"
}
if [ "$action" != test ] && ! "$bin/nix-env" -p "$profile" --set "$toplevel"; then
  put "switch-$id.status" "profile"
  decide failed-before-activation
  exit 1
fi
run_switch "$toplevel" "$action"
code=$?
put "switch-$id.status" "$code"
if [ "$code" = 100 ]; then
  put reboot-required "$toplevel"
  decide reboot-required
  exit 0
fi
if [ "$action" = boot ]; then
  if [ "$code" = 0 ]; then decide boot; else decide failed-before-activation && restore_profile; fi
  exit 0
fi
if [ "$code" != 0 ]; then
  if [ "$(running)" != "$toplevel" ] && { [ "$code" = 1 ] || "$bin/grep" -q 'Could not acquire lock' "$d/switch-$id.out"; }; then
    decide failed-before-activation && restore_profile && put "rolled-back-$id" "code=profile prev=$prev at=$(now)"
  else
    decide activation-failed && roll_back "activation failed with exit $code"
  fi
  exit 0
fi
deadline=$(( $(now) + window ))
put "armed-$id" "pid=$$ action=$action toplevel=$toplevel prev=$prev window=$window deadline=$deadline"
while [ ! -e "$d/rollback-now-$id" ] && [ "$(now)" -lt "$deadline" ]; do
  [ -d "$d/decided-$id" ] && exit 0
  "$bin/sleep" 1
done
who=watchdog
if [ -e "$d/rollback-now-$id" ]; then who=deployer; fi
decide "$who" || exit 0
roll_back "$who"
"#;

/// Takes the decision for deploy `$1` if nobody has (`sh -c DECIDE paranix-decide <id> <verdict> <bin>`), and
/// stops its script (and the `sleep` it waits in). Exit 0: this verdict won; exit 3: another decision was
/// there first, printed on stdout.
pub(crate) const DECIDE: &str = r#"id=$1 verdict=$2 bin=$3
d=/run/paranix
if ! "$bin/mkdir" "$d/decided-$id" 2>/dev/null; then
  "$bin/cat" "$d/decided-$id/by" 2>/dev/null || echo unknown
  exit 3
fi
printf '%s\n' "$verdict" > "$d/decided-$id/by"
pid=$("$bin/cat" "$d/deploy-$id.pid" 2>/dev/null)
if [ -n "$pid" ]; then kill -TERM "-$pid" 2>/dev/null; fi
exit 0
"#;

/// Prints what the host runs and what is pending (`sh -c STATUS paranix-status`): `current=`, `profile=`,
/// `reboot-required=`, then one `pending <id> <armed fields> status=<code or none>` line per deploy that has
/// no decision yet. Uses the login shell's tools: it runs attached, over SSH.
pub(crate) const STATUS: &str = r#"d=/run/paranix
echo "current=$(readlink -f /run/current-system 2>/dev/null)"
echo "profile=$(readlink -f /nix/var/nix/profiles/system 2>/dev/null)"
echo "reboot-required=$(cat "$d/reboot-required" 2>/dev/null)"
for armed in "$d"/armed-*; do
  [ -e "$armed" ] || continue
  id=${armed##*/armed-}
  [ -d "$d/decided-$id" ] && continue
  status=$(cat "$d/switch-$id.status" 2>/dev/null)
  alive=no
  pid=$(cat "$d/deploy-$id.pid" 2>/dev/null)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then alive=yes; fi
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
    /// The exit code of the switch back (`profile` when only the profile went back, `none` with nothing to
    /// go back to).
    pub(crate) code: String,
    pub(crate) prev: String,
}

impl RolledBack {
    pub(crate) fn parse(text: &str) -> Option<RolledBack> {
        let fields: BTreeMap<&str, &str> = text.split_whitespace().filter_map(|w| w.split_once('=')).collect();
        Some(RolledBack {
            code: (*fields.get("code")?).to_owned(),
            prev: fields.get("prev").copied().unwrap_or_default().to_owned(),
        })
    }

    /// Whether the host is back on the previous system (or nothing needed to move back).
    pub(crate) fn succeeded(&self) -> bool {
        matches!(self.code.as_str(), "0" | "profile")
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
        assert!(RolledBack::parse("code=0 prev=/nix/store/x at=1").is_some_and(|r| r.succeeded()));
        assert!(RolledBack::parse("code=profile prev=/nix/store/x at=1").is_some_and(|r| r.succeeded()));
        assert!(RolledBack::parse("code=4 prev=/nix/store/x at=1").is_some_and(|r| !r.succeeded()));
        assert!(RolledBack::parse("garbage").is_none());
    }
}
