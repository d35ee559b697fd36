//! One deploy's phases, each a method of [`Deploy`] over the host's [`Connection`]: read the host, settle a
//! deploy still pending there, copy, check, switch (detached, [`protocol::DEPLOY`]), log in afresh, run the
//! health checks, decide. Every failure after the switch started ends in [`Deploy::roll_back`], which asks the
//! host's script to roll back and reports what the host runs.

use std::time::{Duration, Instant};

use super::protocol::{self, HostStatus, MARKERS, Pending, RolledBack};
use super::{HealthCheck, SYSTEM_PROFILE};
use crate::attr::{Attr, Attrs};
use crate::error::{Error, Result};
use crate::nixos::ssh::{Connection, Ran};
use crate::provider::StepContext;

/// How long activation may take before the deployer stops waiting for it (the host's script keeps going and
/// decides by itself). Activation restarts services; minutes at most in practice.
const ACTIVATION_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the deployer waits for a rollback it asked for.
const ROLLBACK_TIMEOUT: Duration = Duration::from_secs(600);
/// How often the host is polled while it works on its own.
const POLL: Duration = Duration::from_millis(250);

/// A deployment's settings, from its inputs.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    action: String,
    checks: Vec<HealthCheck>,
    health_deadline: Duration,
    confirm_within: Duration,
    connect_timeout: Duration,
}

impl Settings {
    pub(crate) fn from_inputs(inputs: &Attrs) -> Settings {
        let seconds = |field: &str, default: i64| {
            Duration::from_secs(inputs.get(field).and_then(Attr::as_int).unwrap_or(default).max(0) as u64)
        };
        Settings {
            action: inputs.get("action").and_then(Attr::as_str).unwrap_or("switch").to_owned(),
            checks: inputs
                .get("health_checks")
                .and_then(Attr::as_list)
                .unwrap_or_default()
                .iter()
                .filter_map(HealthCheck::from_attr)
                .collect(),
            health_deadline: seconds("health_deadline", 60),
            confirm_within: seconds("confirm_within", 300),
            connect_timeout: seconds("connect_timeout", crate::nixos::ssh::CONNECT_TIMEOUT.as_secs() as i64),
        }
    }
}

/// How a deploy ended, for the deployment's outputs.
pub(crate) struct Done {
    /// What to report ("activated ...", "unchanged ...").
    pub(crate) outcome: String,
    /// The system the host runs.
    pub(crate) current_system: String,
    /// The system the host boots, when known.
    pub(crate) boot_system: Option<String>,
}

/// One deploy of `toplevel` over `conn`.
pub(crate) struct Deploy<'a> {
    pub(crate) ctx: &'a StepContext,
    pub(crate) conn: &'a Connection,
    pub(crate) toplevel: &'a str,
    pub(crate) settings: Settings,
}

/// The deploy's id on the host: 12 random hex digits.
fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// How refresh shows a host whose last deploy waits for its decision: what runs, and what it reverts to.
pub(crate) fn describe_pending(current: &str, pending: &Pending) -> String {
    let back = if pending.prev.is_empty() { "nothing (no previous system)" } else { pending.prev.as_str() };
    match (pending.deadline, pending.alive) {
        (Some(deadline), true) => {
            format!(
                "{current} (unconfirmed deploy {}: reverts to {back} at {})",
                pending.id,
                crate::state::rfc3339(deadline)
            )
        }
        (None, true) => format!("{current} (deploy {} still activating)", pending.id),
        (_, false) => format!("{current} (deploy {} was interrupted before its decision)", pending.id),
    }
}

impl Deploy<'_> {
    fn phase(&self, what: &str) {
        self.ctx.progress(format!("{}: {what}", self.conn.target().display()));
    }

    fn fail(&self, message: impl std::fmt::Display) -> Error {
        Error::provider(&self.ctx.address, format!("{}: {message}", self.conn.target().display()))
    }

    /// The directory of a system's tools (`<system>/sw/bin`), for scripts that run detached.
    fn bin(system: &str) -> String {
        format!("{system}/sw/bin")
    }

    async fn status(&self) -> Result<HostStatus> {
        let ran = self.conn.run(&["/bin/sh", "-c", protocol::STATUS, "paranix-status"]).await?;
        if !ran.ok() {
            return Err(self.fail(format!("cannot read the host's state: {}", ran.stderr)));
        }
        Ok(HostStatus::parse(&ran.stdout))
    }

    /// Runs the phases.
    pub(crate) async fn run(self) -> Result<Done> {
        let status = self.settled_status().await?;
        let action = self.settings.action.clone();
        // A deploy a killed run left waiting for its decision, which installed this very system: check it and
        // confirm it (the host must not revert later). Any other pending deploy is taken over by this one's
        // script once it runs (its watchdog goes only then), and its rollback target becomes this one's.
        if let Some(pending) = status.pending.iter().find(|p| {
            p.toplevel == self.toplevel
                && p.status.as_deref() == Some("0")
                && p.alive
                && status.current.as_deref() == Some(self.toplevel)
        }) {
            return self.confirm_pending(&status, pending).await;
        }
        let takeover: Vec<&str> = status.pending.iter().map(|p| p.id.as_str()).collect();
        let previous = status
            .pending
            .iter()
            .map(|p| p.prev.clone())
            .find(|p| !p.is_empty())
            .or(status.current.clone())
            .or(status.profile.clone());
        let unchanged = status.current.as_deref() == Some(self.toplevel)
            && (action == "test" || status.profile.as_deref() == Some(self.toplevel));
        if unchanged && takeover.is_empty() {
            return Ok(Done {
                outcome: "unchanged: the host already runs this system".into(),
                current_system: self.toplevel.to_owned(),
                boot_system: status.profile,
            });
        }
        if action == "switch"
            && takeover.is_empty()
            && status.reboot_required.as_deref() == Some(self.toplevel)
            && status.profile.as_deref() == Some(self.toplevel)
        {
            return Ok(Done {
                outcome: format!(
                    "installed as the boot default; the host runs it after a reboot (it runs {})",
                    status.current.as_deref().unwrap_or("an unknown system")
                ),
                current_system: status.current.unwrap_or_default(),
                boot_system: Some(self.toplevel.to_owned()),
            });
        }
        self.copy().await?;
        if action == "dry-activate" {
            let ran =
                self.conn.run(&[&format!("{}/bin/switch-to-configuration", self.toplevel), "dry-activate"]).await?;
            return if ran.ok() {
                Ok(Done {
                    outcome: "dry-activated".into(),
                    current_system: status.current.unwrap_or_default(),
                    boot_system: status.profile,
                })
            } else {
                Err(self.fail(format!("dry-activate failed: {}", ran.stderr)))
            };
        }
        // The switch inhibitors are for `switch` and `test`; NixOS skips them for `boot` on purpose.
        if action != "boot" {
            self.check().await?;
        }
        let id = new_id();
        let bin = Self::bin(previous.as_deref().unwrap_or(self.toplevel));
        self.launch(&id, previous.as_deref(), &bin, &takeover).await?;
        self.phase(&format!("activating ({action})"));
        let code = self.wait_for_switch(&id, previous.as_deref()).await?;
        let verdict = self.read_marker(&format!("decided-{id}/by")).await.ok().flatten();
        let verdict = verdict.as_deref().map(str::trim);
        match (code.as_str(), action.as_str(), verdict) {
            ("busy", _, _) => {
                return Err(
                    self.fail("another deploy to this host is running (it holds /run/paranix/lock); nothing changed")
                );
            }
            ("0", "boot", _) => {
                return Ok(Done {
                    outcome: "installed as the boot default".into(),
                    current_system: status.current.unwrap_or_default(),
                    boot_system: Some(self.toplevel.to_owned()),
                });
            }
            (code, "boot", _) => {
                let log = self.read_marker(&format!("boot-{id}.out")).await.ok().flatten().unwrap_or_default();
                return Err(self.fail(format!(
                    "making {} the boot default failed (exit {code}); the profile and the boot loader are back as \
                     they were:\n{}",
                    self.toplevel,
                    tail(&log)
                )));
            }
            ("100", "switch", Some("reboot-required")) => {
                return Ok(Done {
                    outcome: "installed as the boot default, not activated: switch-to-configuration exit 100 (the new \
                              system's init is incompatible with the running one); the host runs it after a reboot"
                        .into(),
                    current_system: status.current.unwrap_or_default(),
                    boot_system: Some(self.toplevel.to_owned()),
                });
            }
            ("100", _, _) => {
                return Err(self.fail(format!(
                    "not activated: switch-to-configuration exit 100 (the new system's init is incompatible with the \
                     running one){}; nothing was installed; the host runs {}",
                    if action == "switch" { ", and making it the boot default failed" } else { "" },
                    status.current.as_deref().unwrap_or("an unknown system")
                )));
            }
            ("0", _, None | Some("confirmed")) => {}
            (code, _, _) => return Err(self.after_failed_switch(&id, code, previous.as_deref()).await),
        }
        self.verify(&id, previous.as_deref()).await?;
        self.decide(&id, "confirmed", &bin, previous.as_deref()).await?;
        self.finish_confirmed(&id, status.profile).await
    }

    /// The host's state once no deploy script is busy rolling back or writing a boot default there, and every
    /// pending deploy's switch has returned.
    async fn settled_status(&self) -> Result<HostStatus> {
        let until = Instant::now() + ROLLBACK_TIMEOUT;
        loop {
            let status = self.status().await?;
            let activating = status.pending.iter().find(|p| p.status.is_none() && p.alive);
            let waiting_for = match (status.busy.first(), activating) {
                (Some(busy), _) => format!("deploy {busy} to finish on the host (a rollback, or a boot default)"),
                (None, Some(p)) => format!("the activation of deploy {} to finish", p.id),
                (None, None) => return Ok(status),
            };
            if Instant::now() > until {
                return Err(self.fail(format!(
                    "gave up waiting for {waiting_for} after {} s; nothing changed",
                    ROLLBACK_TIMEOUT.as_secs()
                )));
            }
            self.phase(&format!("waiting for {waiting_for}"));
            tokio::time::sleep(POLL * 4).await;
        }
    }

    /// Checks and confirms a pending deploy of this system that a killed run left behind.
    async fn confirm_pending(&self, status: &HostStatus, pending: &Pending) -> Result<Done> {
        self.phase(&format!("confirming the interrupted deploy {} after checking it", pending.id));
        let prev = (!pending.prev.is_empty()).then_some(pending.prev.as_str());
        let bin = Self::bin(prev.unwrap_or(self.toplevel));
        self.verify(&pending.id, prev).await?;
        self.decide(&pending.id, "confirmed", &bin, prev).await?;
        let mut done = self.finish_confirmed(&pending.id, status.profile.clone()).await?;
        done.outcome = format!("confirmed the interrupted deploy of {}", self.toplevel);
        Ok(done)
    }

    /// After the confirmation: a `switch` becomes the boot default (the host's script does it); waits for that.
    async fn finish_confirmed(&self, id: &str, profile: Option<String>) -> Result<Done> {
        if self.settings.action != "switch" {
            return Ok(Done {
                outcome: format!("activated {} (not the boot default)", self.toplevel),
                current_system: self.toplevel.to_owned(),
                boot_system: profile,
            });
        }
        self.phase("making it the boot default");
        let until = Instant::now() + ROLLBACK_TIMEOUT;
        let booted = loop {
            match self.read_marker(&format!("booted-{id}")).await {
                Ok(Some(text)) => break text,
                Ok(None) if Instant::now() < until => tokio::time::sleep(POLL).await,
                Ok(None) => return Err(self.fail("activated and confirmed; making it the boot default did not finish")),
                Err(e) => return Err(e),
            }
        };
        if booted.trim() == "code=0" {
            return Ok(Done {
                outcome: format!("activated {}", self.toplevel),
                current_system: self.toplevel.to_owned(),
                boot_system: Some(self.toplevel.to_owned()),
            });
        }
        let log = self.read_marker(&format!("boot-{id}.out")).await.ok().flatten().unwrap_or_default();
        Err(self.fail(format!(
            "activated and confirmed, but making it the boot default failed ({}): the host runs {} and boots {}:\n{}",
            booted.trim(),
            self.toplevel,
            profile.as_deref().unwrap_or("the previous system"),
            tail(&log)
        )))
    }

    /// Copies what the host lacks of the closure. The validity check takes the path list on stdin (a
    /// NixOS closure's paths do not fit one command line: Linux caps an argument at 128 KiB).
    async fn copy(&self) -> Result<()> {
        let closure =
            local(&["nix-store", "--query", "--requisites", self.toplevel]).await.map_err(|e| self.fail(e))?;
        let paths: Vec<&str> = closure.lines().collect();
        let check = self
            .conn
            .run_with_input(&["xargs", "nix-store", "--check-validity", "--print-invalid"], closure.as_bytes())
            .await?;
        if !check.ok() {
            return Err(self.fail(format!("cannot ask the host which paths it has: {}", check.stderr)));
        }
        let missing = check.stdout.lines().filter(|l| l.starts_with("/nix/store/")).count();
        self.phase(&format!("copying {missing} of {} paths", paths.len()));
        if missing == 0 {
            return Ok(());
        }
        let target = self.conn.target();
        let out = tokio::process::Command::new("nix-copy-closure")
            .args(["--to", &format!("{}@{}", target.user, target.host), self.toplevel])
            .env("NIX_SSHOPTS", self.conn.nix_sshopts())
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| self.fail(format!("cannot run nix-copy-closure: {e}")))?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = stderr.trim();
        if why.contains("lacks a valid signature") || why.contains("lacks a signature by a trusted key") {
            return Err(self.fail(format!(
                "copying the closure failed: the host's Nix refuses unsigned paths from {:?}: make it a trusted \
                 user there (`paranix.deployUser`, which sets nix.settings.trusted-users) or deploy as root ({why})",
                target.user
            )));
        }
        Err(self.fail(format!("copying the closure failed: {why}")))
    }

    /// `switch-to-configuration check` (NixOS 26.05: pre-switch checks and switch inhibitors) before anything
    /// changes. Systems without the action (older NixOS) answer with their usage text: skipped.
    async fn check(&self) -> Result<()> {
        let switch = format!("{}/bin/switch-to-configuration", self.toplevel);
        for attempt in 1..=30 {
            let ran = self.conn.run(&[&switch, "check"]).await?;
            let text = format!("{}\n{}", ran.stdout, ran.stderr);
            if ran.ok() || text.contains("Usage:") {
                return Ok(());
            }
            if text.contains("Could not acquire lock") && attempt < 30 {
                self.phase("another switch holds the host's switch lock; waiting");
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            if text.contains("Could not acquire lock") {
                return Err(self.fail(
                    "another switch-to-configuration holds the host's lock (/run/nixos/switch-to-configuration.lock) \
                     and did not finish within a minute; nothing was changed",
                ));
            }
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            return Err(self.fail(format!(
                "the pre-switch checks of {} failed; nothing was changed:\n{}",
                self.toplevel,
                lines.join("\n")
            )));
        }
        Ok(())
    }

    /// Starts the deploy script detached from this SSH session: `systemd-run` where the host runs systemd,
    /// else `setsid` (the script ignores SIGHUP).
    async fn launch(&self, id: &str, previous: Option<&str>, bin: &str, takeover: &[&str]) -> Result<()> {
        let window = self.settings.confirm_within.as_secs().to_string();
        let unit = format!("paranix-deploy-{id}");
        let systemd = self.conn.run(&["test", "-d", "/run/systemd/system"]).await?.ok();
        let systemd_run = format!("{bin}/systemd-run");
        let setsid = format!("{bin}/setsid");
        let mut argv: Vec<&str> = if systemd {
            vec![&systemd_run, "--quiet", "--collect", "--service-type=exec", "--unit", &unit]
        } else {
            vec![&setsid, "-f"]
        };
        let prev = previous.unwrap_or("");
        let takeover = takeover.join(" ");
        argv.extend([
            "/bin/sh",
            "-c",
            protocol::DEPLOY,
            "paranix-deploy",
            id,
            &self.settings.action,
            self.toplevel,
            prev,
            &window,
            bin,
            SYSTEM_PROFILE,
            &takeover,
        ]);
        let launched = self.conn.run(&argv).await?;
        if !launched.ok() {
            return Err(self.fail(format!("cannot start the activation (nothing changed): {}", launched.stderr)));
        }
        Ok(())
    }

    /// Reads a marker file; `None` while it does not exist. Through the master, or a fresh connection when it
    /// is gone; `Err` when the host cannot be reached at all.
    async fn read_marker(&self, name: &str) -> Result<Option<String>> {
        let path = format!("{MARKERS}/{name}");
        let ran = self.conn.run(&["cat", &path]).await?;
        if ran.unreachable() {
            return Err(self.fail("the host stopped answering"));
        }
        Ok(ran.ok().then_some(ran.stdout))
    }

    /// Waits for the switch's exit code (`switch-<id>.status`).
    async fn wait_for_switch(&self, id: &str, previous: Option<&str>) -> Result<String> {
        let until = Instant::now() + ACTIVATION_TIMEOUT;
        let mut unreachable_since: Option<Instant> = None;
        loop {
            match self.read_marker(&format!("switch-{id}.status")).await {
                Ok(Some(code)) => return Ok(code.trim().to_owned()),
                Ok(None) => unreachable_since = None,
                Err(_) => {
                    // Activation may restart sshd; a host unreachable for four connect timeouts is gone.
                    let since = *unreachable_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > self.settings.connect_timeout * 4 {
                        return Err(self.fail(format!(
                            "the host stopped answering during activation; it decides by itself: it rolls back to {} \
                             unless this deploy is confirmed within {} s of the end of activation (see its state with \
                             `refresh`)",
                            previous.unwrap_or("nothing (no previous system)"),
                            self.settings.confirm_within.as_secs()
                        )));
                    }
                }
            }
            if Instant::now() > until {
                return Err(self.fail(format!(
                    "activation did not finish within {} s; the host decides by itself once it does",
                    ACTIVATION_TIMEOUT.as_secs()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// After a failed switch: the host's script rolls back by itself (or knows nothing changed); wait for it
    /// and report.
    async fn after_failed_switch(&self, id: &str, code: &str, previous: Option<&str>) -> Error {
        let log = self.read_marker(&format!("switch-{id}.out")).await.ok().flatten().unwrap_or_default();
        let why = if log.contains("Could not acquire lock") {
            "another switch-to-configuration held the host's lock for over a minute".to_owned()
        } else if log.contains("Pre-switch checks failed") {
            "the pre-switch checks failed".to_owned()
        } else if code == "0" {
            "activation reported success but the host does not run the new system".to_owned()
        } else {
            format!("activation failed (exit {code})")
        };
        let rolled = self.wait_rolled_back(id).await;
        self.report(&format!("{why}:\n{}", tail(&log)), rolled, previous).await
    }

    /// The fresh login and the health checks; on failure, the rollback.
    async fn verify(&self, id: &str, previous: Option<&str>) -> Result<()> {
        self.phase("logging in afresh");
        // The login must run what paranix asks: a new `ForceCommand` or a key's `command=` would let the
        // login "succeed" while no deploy could ever run again, so the login echoes a value nobody else knows.
        let nonce = format!("paranix-login-{}", uuid::Uuid::new_v4().simple());
        match self.conn.target().fresh_command(&["echo", &nonce]).await {
            Ok(ran) if ran.ok() && ran.stdout.trim() == nonce => {}
            Ok(ran) if ran.ok() => {
                let why = "a fresh SSH login after activation did not run the command it was given (a \
                           `ForceCommand` or a key's `command=` restriction?)";
                return Err(self.roll_back(id, why, previous).await);
            }
            Ok(ran) => {
                let why = format!("a fresh SSH login after activation failed: {}", ran.stderr);
                return Err(self.roll_back(id, &why, previous).await);
            }
            Err(e) => {
                let why = format!("a fresh SSH login after activation failed: {e}");
                return Err(self.roll_back(id, &why, previous).await);
            }
        }
        for check in &self.settings.checks {
            self.phase(&format!("checking {}", describe(check)));
            if let Err(why) = run_check(self.conn, check, self.settings.health_deadline).await {
                let why = format!("health check {} failed: {why}", describe(check));
                return Err(self.roll_back(id, &why, previous).await);
            }
        }
        Ok(())
    }

    /// Asks the host's script to roll back now (it does so detached, as it switched), waits for it, and
    /// returns the error to report.
    async fn roll_back(&self, id: &str, why: &str, previous: Option<&str>) -> Error {
        self.phase("asking the host to roll back");
        let mark = format!("{MARKERS}/rollback-now-{id}");
        let asked = match self.conn.run(&["touch", &mark]).await {
            Ok(ran) if ran.ok() => true,
            _ => self.conn.target().fresh_command(&["touch", &mark]).await.is_ok_and(|r| r.ok()),
        };
        if !asked {
            return self.fail(format!(
                "{why}; the host cannot be reached to ask for the rollback: it rolls back to {} by itself when its \
                 confirmation window ends ({} s after activation)",
                previous.unwrap_or("nothing (no previous system)"),
                self.settings.confirm_within.as_secs()
            ));
        }
        self.phase("rolling back on the host");
        let rolled = self.wait_rolled_back(id).await;
        self.report(why, rolled, previous).await
    }

    /// Waits for `rolled-back-<id>`.
    async fn wait_rolled_back(&self, id: &str) -> Option<RolledBack> {
        let until = Instant::now() + ROLLBACK_TIMEOUT;
        while Instant::now() < until {
            match self.read_marker(&format!("rolled-back-{id}")).await {
                Ok(Some(text)) => return RolledBack::parse(&text),
                Ok(None) => {}
                Err(_) => return None,
            }
            tokio::time::sleep(POLL).await;
        }
        None
    }

    /// The error after a rollback (or an attempt), naming what the host runs.
    async fn report(&self, why: &str, rolled: Option<RolledBack>, previous: Option<&str>) -> Error {
        let runs = match self.status().await {
            Ok(status) => status.current.unwrap_or_else(|| "an unknown system".into()),
            Err(_) => "unknown (the host does not answer)".into(),
        };
        match rolled {
            Some(r) if r.code == "none" => {
                self.fail(format!("{why}; there is no previous system to roll back to; the host runs {runs}"))
            }
            Some(r) if r.code == "nothing-changed" => {
                self.fail(format!("{why}; nothing was changed; the host runs {runs}"))
            }
            Some(r) if r.succeeded() => self.fail(format!("rolled back to {}: {why}; the host runs {runs}", r.prev)),
            Some(r) => self.fail(format!(
                "{why}; rolling back to {} failed too (switch-to-configuration exit {}); the host runs {runs}",
                r.prev, r.code
            )),
            None => self.fail(format!(
                "{why}; the rollback to {} did not report back; the host runs {runs}",
                previous.unwrap_or("the previous system")
            )),
        }
    }

    /// Runs [`protocol::DECIDE`] over a fresh connection (the confirmation proves a new login works).
    async fn decide_raw(&self, id: &str, verdict: &str, bin: &str) -> Result<Ran> {
        self.conn.target().fresh_command(&["/bin/sh", "-c", protocol::DECIDE, "paranix-decide", id, verdict, bin]).await
    }

    /// Takes the decision `verdict` for deploy `id`; fails, naming what the host runs, when another decision
    /// (the watchdog's) came first.
    async fn decide(&self, id: &str, verdict: &str, bin: &str, previous: Option<&str>) -> Result<()> {
        self.phase("confirming");
        let ran = self.decide_raw(id, verdict, bin).await?;
        match ran.code {
            // The script says which verdict it wrote: a login that runs something else (a `ForceCommand`) and
            // exits 0 has decided nothing.
            Some(0) if ran.stdout.trim() == format!("paranix-decided {verdict}") => Ok(()),
            Some(3) => {
                let by = ran.stdout.trim().to_owned();
                let rolled = match by.as_str() {
                    "watchdog" | "deployer" | "activation-failed" => self.wait_rolled_back(id).await,
                    _ => None,
                };
                Err(self
                    .report(&format!("the host decided first ({by}): the confirmation came too late"), rolled, previous)
                    .await)
            }
            Some(4) => {
                let runs =
                    self.status().await.ok().and_then(|s| s.current).unwrap_or_else(|| "an unknown system".into());
                Err(self.fail(format!(
                    "the host no longer knows this deploy (it rebooted before the confirmation: the boot default never \
                     moved); the host runs {runs}"
                )))
            }
            _ => Err(self.fail(format!(
                "the confirmation could not be written ({}); the host rolls back to {} by itself when its window ends",
                ran.stderr,
                previous.unwrap_or("the previous system")
            ))),
        }
    }
}

/// The last lines of a log, for error messages.
fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}

fn describe(check: &HealthCheck) -> String {
    match check {
        HealthCheck::Http { port, path } => format!("GET :{port}{path}"),
        HealthCheck::Command(argv) => format!("`{}`", argv.join(" ")),
    }
}

/// Retries `check` every second until it passes or `deadline` passes; returns the last failure.
async fn run_check(conn: &Connection, check: &HealthCheck, deadline: Duration) -> std::result::Result<(), String> {
    let until = Instant::now() + deadline;
    loop {
        let result = match check {
            HealthCheck::Http { port, path } => http_get(&conn.target().host, *port, path).await,
            HealthCheck::Command(argv) => {
                let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
                match conn.target().fresh_command(&argv).await {
                    Ok(ran) if ran.ok() => Ok(()),
                    Ok(ran) => Err(format!("exit {:?}: {}", ran.code, ran.stderr)),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        match result {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() >= until => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// A minimal HTTP/1.1 GET: the status must be 2xx. The path was checked at plan time (visible ASCII only).
async fn http_get(host: &str, port: u16, path: &str) -> std::result::Result<(), String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    crate::aws::catalog::check_http_path(path)?;
    let connect = tokio::net::TcpStream::connect((host, port));
    let mut stream = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .map_err(|_| "connect timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut head))
        .await
        .map_err(|_| "no answer".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = String::from_utf8_lossy(&head[9..12]).to_string();
    if status.starts_with('2') { Ok(()) } else { Err(format!("HTTP {status}")) }
}

/// Runs a local command, returning stdout.
async fn local(argv: &[&str]) -> std::result::Result<String, String> {
    let out = tokio::process::Command::new(argv[0])
        .args(&argv[1..])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .map_err(|e| format!("cannot run {}: {e}", argv[0]))?;
    if !out.status.success() {
        return Err(format!("{} failed: {}", argv.join(" "), String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
