# A fake NixOS system closure for the SSH test rig (tests/src/rig.rs). No nixpkgs: every derivation is
# `builtins.derivation` with builder /bin/sh and absolute paths to the host's coreutils, so it builds with
#   nix-build tests/nix/fake-system.nix --no-out-link \
#     --option build-users-group '' --option sandbox false --option substituters ''
#
# Closure (nPkgs + 2 paths): 1 lib <- nPkgs packages (each references the lib) <- the toplevel (references
# every package through sw/ symlinks).
#   --argstr tag X    a new toplevel over the same dependencies (a one-path update)
#   --argstr salt X   a completely new closure
#   --arg nPkgs N --arg sizeKiB K   N packages of K KiB each (deterministic content, no /dev/urandom)
#   activate, extraBuild            shell for switch|test and for the toplevel's build (fake-printerfacts-host.nix)
#
# The toplevel looks like a NixOS one where it matters to a deploy tool:
#   nixos-version                  the tag
#   system                         the system double, e.g. x86_64-linux
#   bin/switch-to-configuration    check|switch|boot|test|dry-activate, see switchScript below
#   init-interface-version         --argstr initInterfaceVersion (default "systemd")
#   sw/bin/                        the host tools deploy scripts call (see tools), and a fake systemd-run
#   sw/<package>                   symlinks to the packages
{
  tag ? "gen1",
  salt ? "",
  nPkgs ? 3,
  sizeKiB ? 16,
  system ? builtins.currentSystem,
  # Shell run by switch|test after /run/current-system points at the new system ($toplevel is set): a
  # stand-in for starting the system's services.
  activate ? "",
  # Shell run at the end of the toplevel's build ($out is set), to add files to it.
  extraBuild ? "",
  # <toplevel>/init-interface-version: switching between systems whose versions differ exits 100.
  initInterfaceVersion ? "systemd",
  # The packages' name (store path names as long as NixOS's make path lists as long as a real closure's).
  pkgName ? "fake-pkg",
}:
let
  mk =
    name: script: env:
    builtins.derivation (
      {
        inherit name system;
        builder = "/bin/sh";
        args = [
          "-c"
          script
        ];
      }
      // env
    );

  lib = mk "fake-lib-1.0" ''
    set -e
    /bin/mkdir -p $out/lib
    echo "libfake salt=$salt" > $out/lib/libfake.txt
  '' { inherit salt; };

  pkgs = builtins.genList (
    i:
    mk "${pkgName}-${toString i}-1.0" ''
      set -e
      /bin/mkdir -p $out/bin $out/share
      /usr/bin/yes "fake-pkg-$index salt=$salt" | /usr/bin/head -c $((sizeKiB * 1024)) > $out/share/blob
      echo "$lib" > $out/share/uses-lib
      printf '#!/bin/sh\necho fake-pkg-%s\n' "$index" > $out/bin/fake-pkg-$index
      /bin/chmod +x $out/bin/fake-pkg-$index
    '' {
      inherit lib sizeKiB salt;
      index = toString i;
    }
  ) nPkgs;

  # What a deploy tool runs on the target: <toplevel>/bin/switch-to-configuration ACTION, following the contract
  # of NixOS 26.05's switch-to-configuration-ng (pkgs/by-name/sw/switch-to-configuration-ng/src/main.rs), step by
  # step, with the effects recorded under the target's /run (the target is no NixOS: no systemd, no boot loader):
  #
  #   usage                 unknown or missing action: usage text, exit 1
  #   lock                  /run/nixos/switch-to-configuration.lock, taken non-blocking (flock -n): a second
  #                         switch fails at once with "Could not acquire lock", exit 11 (errno EAGAIN)
  #   pre-switch checks     unless NIXOS_NO_CHECK=1: /run/fake-nixos/inhibit present -> "Pre-switch checks
  #                         failed", exit 1, nothing changed (the switch inhibitors are not checked for boot and
  #                         dry-activate, as NixOS's own check skips them)
  #   check                 exit 0 here
  #   boot loader           switch|boot: /run/fake-nixos/fail-bootloader present -> "Failed to install
  #                         bootloader", exit 1; else /run/fake-nixos/boot-system -> toplevel
  #   boot                  exit 0 here
  #   init interface        <toplevel>/init-interface-version differs from /run/current-system's: the warning
  #                         "won't take effect until you reboot", exit 100, nothing activated (dry-activate too)
  #   dry-activate          prints what it would do, exit 0
  #   stopping units        /run/fake-nixos/fail-after-stopping-units present (deleted when used): "stopping the
  #                         following units: ...", then an internal error, exit 1, /run/current-system unchanged
  #   activation            switch|test: waits /run/fake-nixos/activation-seconds (if present), links
  #                         /run/current-system -> toplevel, runs `activate`
  #   units                 exit 4 after activation when injected (below)
  #
  # Failure injection: /run/fake-nixos/fail-next-switch holds an exit code for the next switch|boot|test
  # (deleted when used): 1 fails before activation (as the pre-switch checks do), 2 fails after linking
  # /run/current-system (the activation script failed half-way), 4 after a complete activation (units failed),
  # 100 as an incompatible init does, any other code after activation. Each call appends "ACTION TOPLEVEL" (plus
  # " exit=CODE" when it failed) to /run/fake-nixos/switch.log. @out@ is replaced by the toplevel's path at build
  # time (like the real script, it knows its system).
  switchScript = ''
    #!/bin/sh
    toplevel=@out@
    state=/run/fake-nixos
    action="$1"
    case "$action" in
      check|switch|boot|test|dry-activate) ;;
      *)
        echo "Usage: $0 [check|switch|boot|test|dry-activate]" >&2
        exit 1
        ;;
    esac
    /bin/mkdir -p "$state" /run/nixos || exit 1
    log() { echo "$action $toplevel$1" >> "$state/switch.log"; }
    exec 9>>/run/nixos/switch-to-configuration.lock
    if ! /usr/bin/flock -n 9; then
      echo "Could not acquire lock" >&2
      log " exit=11"
      exit 11
    fi
    code=0
    if [ "$action" != check ] && [ "$action" != dry-activate ] && [ -e "$state/fail-next-switch" ]; then
      code=$(/bin/cat "$state/fail-next-switch")
      /bin/rm -f "$state/fail-next-switch"
      case "$code" in
        ""|*[!0-9]*) code=1 ;;
      esac
    fi
    inhibited=no
    if [ -e "$state/inhibit" ]; then
      case "$action" in
        boot|dry-activate) echo "Not checking switch inhibitors (action = $action)" >&2 ;;
        *) inhibited=yes ;;
      esac
    fi
    if [ "''${NIXOS_NO_CHECK:-}" != 1 ] && { [ "$inhibited" = yes ] || [ "$code" = 1 ]; }; then
      echo "There are changes to critical components of the system: $(/bin/cat "$state/inhibit" 2>/dev/null)" >&2
      echo "Pre-switch check 'switchInhibitors' failed" >&2
      echo "Pre-switch checks failed" >&2
      log " exit=1"
      exit 1
    fi
    if [ "$action" = check ]; then
      log ""
      exit 0
    fi
    case "$action" in
      switch|boot)
        if [ -e "$state/fail-bootloader" ]; then
          echo "Failed to install bootloader" >&2
          log " exit=1"
          exit 1
        fi
        /bin/ln -sfn "$toplevel" "$state/boot-system" || exit 1
        ;;
    esac
    if [ "$action" = boot ]; then
      log ""
      exit 0
    fi
    current=$(/bin/cat /run/current-system/init-interface-version 2>/dev/null)
    if [ "$code" = 100 ] || { [ -n "$current" ] && [ "$current" != "$(/bin/cat "$toplevel/init-interface-version")" ]; }; then
      echo "Warning: the new NixOS configuration has an ‘init’ that is" >&2
      echo "incompatible with the current configuration.  The new configuration" >&2
      echo "won't take effect until you reboot the system." >&2
      log " exit=100"
      exit 100
    fi
    if [ "$action" = dry-activate ]; then
      echo "would activate the configuration..." >&2
      log ""
      exit 0
    fi
    if [ -e "$state/fail-after-stopping-units" ]; then
      /bin/rm -f "$state/fail-after-stopping-units"
      echo "stopping the following units: fake-service.service" >&2
      echo "fake-service.service" >> "$state/stopped-units"
      echo "Error: systemd daemon reload failed, timeout after 180s" >&2
      log " exit=1"
      exit 1
    fi
    echo "activating the configuration..." >&2
    if [ -s "$state/activation-seconds" ]; then
      /bin/sleep "$(/bin/cat "$state/activation-seconds")"
    fi
    /bin/ln -sfn "$toplevel" /run/current-system || exit 2
    if [ "$code" = 2 ]; then
      echo "Failed to run activate script" >&2
      log " exit=2"
      exit 2
    fi
    # What activation starts must not inherit the lock (systemd starts services, not the switch).
    {
      :
      ${activate}
    } 9>&-
    if [ "$code" != 0 ]; then
      echo "warning: the following units failed: fake-injected.service" >&2
      log " exit=$code"
      exit "$code"
    fi
    log ""
    exit 0
  '';

  # systemd-run as a deploy tool uses it (systemd-run(1): "--unit=", "--service-type=exec", "--collect",
  # "--quiet"): the command runs as a transient service, in a clean environment with the service manager as its
  # parent, detached from the caller's session; systemd-run returns once it started. A unit name already in use
  # by a running unit fails with "Unit NAME.service already exists.". The target has no systemd: the command
  # runs in a new session (setsid, stdio on /dev/null) with an empty environment in / (a service's), its unit
  # recorded in /run/fake-systemd.
  systemdRun = ''
    #!/bin/sh
    unit=run-$$
    while [ $# -gt 0 ]; do
      case "$1" in
        --unit) unit=$2; shift 2 ;;
        --unit=*) unit=''${1#--unit=}; shift ;;
        --quiet|--collect|--service-type=exec|-q|-G) shift ;;
        -*) echo "fake systemd-run: unsupported option $1" >&2; exit 1 ;;
        *) break ;;
      esac
    done
    units=/run/fake-systemd
    /bin/mkdir -p "$units"
    if [ -e "$units/$unit" ] && /bin/kill -0 "$(/bin/cat "$units/$unit")" 2>/dev/null; then
      echo "Failed to start transient service unit: Unit $unit.service already exists." >&2
      exit 1
    fi
    cd / && /usr/bin/env -i /usr/bin/setsid -f /bin/sh -c 'echo $$ > "$0"; exec "$@"' "$units/$unit" "$@" </dev/null >/dev/null 2>&1 || exit 1
    echo "$unit" >> "$units/started"
  '';

  # The host tools a deploy's detached scripts call by absolute path from <system>/sw/bin, as NixOS's
  # system-path provides them (coreutils, grep, util-linux, findutils, nix).
  tools = [
    "/bin/cat"
    "/bin/date"
    "/bin/grep"
    "/bin/kill"
    "/bin/ln"
    "/bin/mkdir"
    "/bin/mv"
    "/bin/readlink"
    "/bin/rm"
    "/bin/sleep"
    "/bin/touch"
    "/usr/bin/flock"
    "/usr/bin/nix-env"
    "/usr/bin/nix-store"
    "/usr/bin/setsid"
    "/usr/bin/xargs"
  ];

  toplevel = mk "nixos-system-fake-${tag}" ''
    set -e
    /bin/mkdir -p $out/bin $out/sw/bin
    printf '%s' "$switchScript" | /bin/sed "s|@out@|$out|g" > $out/bin/switch-to-configuration
    /bin/chmod +x $out/bin/switch-to-configuration
    printf '%s' "$systemdRun" > $out/sw/bin/systemd-run
    /bin/chmod +x $out/sw/bin/systemd-run
    for tool in $tools; do /bin/ln -s "$(/usr/bin/readlink -f $tool)" $out/sw/bin/$(/usr/bin/basename $tool); done
    printf '%s\n' "$tag" > $out/nixos-version
    printf '%s\n' "$system" > $out/system
    printf '%s' "$initInterfaceVersion" > $out/init-interface-version
    for p in $(/bin/cat "$pkgsPath"); do /bin/ln -s $p $out/sw/$(/usr/bin/basename $p); done
    ${extraBuild}
  '' {
    inherit switchScript systemdRun tools tag pkgs initInterfaceVersion;
    # As a file: the list of a large closure does not fit one environment variable (128 KiB).
    passAsFile = [ "pkgs" ];
  };
in
toplevel
