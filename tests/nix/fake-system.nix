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
#   bin/switch-to-configuration    switch|boot|test|dry-activate, see switchScript below
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
    mk "fake-pkg-${toString i}-1.0" ''
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

  # What a deploy tool runs on the target: <toplevel>/bin/switch-to-configuration ACTION. The target is no
  # NixOS (no systemd, no bootloader), so the script only records its effect under the target's /run:
  #   /run/current-system          -> toplevel (switch, test)
  #   /run/fake-nixos/boot-system  -> toplevel (switch, boot)
  #   /run/fake-nixos/switch.log   one line per call: "ACTION TOPLEVEL", plus " exit=CODE" if it failed
  # Failure injection: if /run/fake-nixos/fail-next-switch exists, the next switch|boot|test reads an exit
  # code from it (1 if empty or not a number), deletes it and exits with that code. With 4 (activated, but
  # some units failed) and 100 (activated, reboot needed) it first does its work, as real NixOS does; with
  # any other code it changes nothing. dry-activate changes nothing and leaves the file in place.
  # @out@ is replaced by the toplevel's path at build time (like the real script, it knows its system).
  switchScript = ''
    #!/bin/sh
    toplevel=@out@
    state=/run/fake-nixos
    action="$1"
    case "$action" in
      switch|boot|test|dry-activate) ;;
      *) echo "Usage: $0 [switch|boot|test|dry-activate]" >&2; exit 1 ;;
    esac
    /bin/mkdir -p "$state" || exit 1
    if [ "$action" = dry-activate ]; then
      echo "$action $toplevel" >> "$state/switch.log"
      echo "would activate the configuration $toplevel" >&2
      exit 0
    fi
    code=0
    if [ -e "$state/fail-next-switch" ]; then
      code=$(/bin/cat "$state/fail-next-switch")
      /bin/rm -f "$state/fail-next-switch"
      case "$code" in
        ""|*[!0-9]*) code=1 ;;
      esac
      if [ "$code" != 0 ] && [ "$code" != 4 ] && [ "$code" != 100 ]; then
        echo "$action $toplevel exit=$code" >> "$state/switch.log"
        echo "fake-nixos: injected activation failure (exit $code)" >&2
        exit "$code"
      fi
    fi
    echo "activating the configuration $toplevel ($action)..." >&2
    case "$action" in
      switch|test) /bin/ln -sfn "$toplevel" /run/current-system || exit 1 ;;
    esac
    case "$action" in
      switch|boot) /bin/ln -sfn "$toplevel" "$state/boot-system" || exit 1 ;;
    esac
    case "$action" in
      switch|test)
        ${activate}
        ;;
    esac
    if [ "$code" = 0 ]; then
      echo "$action $toplevel" >> "$state/switch.log"
    else
      echo "$action $toplevel exit=$code" >> "$state/switch.log"
      case "$code" in
        4) echo "warning: the following units failed: fake-injected.service" >&2 ;;
        100) echo "fake-nixos: a reboot is needed to finish the switch" >&2 ;;
      esac
    fi
    exit "$code"
  '';

  toplevel = mk "nixos-system-fake-${tag}" ''
    set -e
    /bin/mkdir -p $out/bin $out/sw
    printf '%s' "$switchScript" | /bin/sed "s|@out@|$out|g" > $out/bin/switch-to-configuration
    /bin/chmod +x $out/bin/switch-to-configuration
    printf '%s\n' "$tag" > $out/nixos-version
    printf '%s\n' "$system" > $out/system
    for p in $pkgs; do /bin/ln -s $p $out/sw/$(/usr/bin/basename $p); done
    ${extraBuild}
  '' { inherit switchScript tag pkgs; };
in
toplevel
