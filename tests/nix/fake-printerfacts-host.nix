# A stand-in for nix/host.nix for the printerfacts end-to-end test (tests/it/host.rs): the same arguments and
# the same PARANIX_VALUES JSON file the real evaluation reads, and the host's real modules (common/, the
# configuration) evaluated with the real NixOS module system (tests/nix/modules/eval.nix, nixpkgs' lib from
# PARANIX_NIXPKGS_LIB), but no nixpkgs packages and no NixOS: the toplevel is a fake (fake-system.nix) that makes
# the rig target behave like that system where the test looks:
#
#   etc/ssh/sshd_config.d/paranix.conf   the login settings the evaluated sshd gets: PermitRootLogin,
#                                        AuthorizedKeysFile, PasswordAuthentication, ...
#   etc/ssh/authorized_keys.d/<user>     the keys the configuration admits (sshd.nix writes these files)
#   etc/printerfacts-domain              paranix.services.printerfacts.domain
#   bin/printerfacts                     the real service binary (options.test.printerfacts.bin, built by cargo)
#
# Its activation installs the sshd files into the target's /etc/ssh and reloads the target's sshd (as a NixOS
# switch reloads sshd when /etc/ssh/sshd_config changes), then restarts the service. So a system that would lock
# the deployer out of an EC2 host locks it out of the target too; and, as NixOS does, a configuration whose
# assertions fail (nobody could log in) is refused at evaluation.
#
# Test-only options (`test.printerfacts.bin`, `test.printerfacts.port`) travel with the NixOS options from Rust
# and are declared here so the module system accepts them.
{
  configuration,
  system ? builtins.currentSystem,
}:
let
  values = builtins.fromJSON (builtins.readFile (builtins.getEnv "PARANIX_VALUES"));
  libPath = builtins.getEnv "PARANIX_NIXPKGS_LIB";
  lib =
    if libPath == "" then
      throw "tests/nix/fake-printerfacts-host.nix needs nixpkgs' lib/: set PARANIX_NIXPKGS_LIB"
    else
      import libPath;
  testOptions = {
    options.test = lib.mkOption {
      type = lib.types.attrsOf lib.types.anything;
      default = { };
    };
  };
  evaluated = import ./modules/eval.nix {
    inherit lib configuration;
    options = values.options or { };
    extraModules = [ testOptions ];
  };
  report =
    if evaluated.report.failedAssertions == [ ] then
      evaluated.report
    else
      throw "Failed assertions:\n- ${lib.concatStringsSep "\n- " evaluated.report.failedAssertions}";
  service = evaluated.config.test.printerfacts;
  bin = builtins.path {
    path = /. + service.bin;
    name = "printerfacts-service";
  };
  port = toString service.port;

  sshdValue = value: if builtins.isBool value then (if value then "yes" else "no") else toString value;
  login = [
    "PermitRootLogin"
    "PasswordAuthentication"
    "KbdInteractiveAuthentication"
    "AuthenticationMethods"
  ];
  sshdConf = lib.concatStrings (
    map (name: "${name} ${sshdValue report.sshd.settings.${name}}\n") (
      lib.filter (name: report.sshd.settings ? ${name}) login
    )
    ++ [ "AuthorizedKeysFile ${toString report.sshd.authorizedKeysFiles}\n" ]
  );
  keyFiles = lib.concatStrings (
    lib.mapAttrsToList (user: keys: ''
      printf '%s' ${lib.escapeShellArg keys} > "$out/etc/ssh/authorized_keys.d/"${lib.escapeShellArg user}
    '') report.sshd.authorizedKeys
  );
in
import ./fake-system.nix {
  inherit system;
  tag = "printerfacts-${builtins.substring 0 12 (builtins.hashString "sha256" (builtins.toJSON (values.options or { })))}";
  salt = "printerfacts";
  nPkgs = 1;
  extraBuild = ''
    /bin/mkdir -p $out/etc/ssh/sshd_config.d $out/etc/ssh/authorized_keys.d
    printf '%s' ${lib.escapeShellArg sshdConf} > $out/etc/ssh/sshd_config.d/paranix.conf
    ${keyFiles}
    printf '%s\n' ${lib.escapeShellArg report.printerfacts.domain} > $out/etc/printerfacts-domain
    /bin/cp ${bin} $out/bin/printerfacts
  '';
  activate = ''
    # sshd: this system's login settings and keys, then a reload (SIGHUP: sshd re-executes itself and reads
    # its configuration again; open sessions stay). The rig's sshd_config includes /etc/ssh/sshd_config.d/*.conf
    # first, so these settings win.
    /bin/mkdir -p /etc/ssh/sshd_config.d
    /bin/cp "$toplevel/etc/ssh/sshd_config.d/paranix.conf" /etc/ssh/sshd_config.d/paranix.conf
    /bin/rm -rf /etc/ssh/authorized_keys.d
    /bin/cp -r "$toplevel/etc/ssh/authorized_keys.d" /etc/ssh/authorized_keys.d
    /bin/sh /run/paranix-rig/reload-sshd

    # The service: stop the previous generation's (if any), start this one's, detached from the SSH session.
    pidfile=/run/fake-nixos/printerfacts.pid
    if [ -e "$pidfile" ]; then
      old=$(/bin/cat "$pidfile")
      /bin/kill "$old" 2>/dev/null
      while /bin/kill -0 "$old" 2>/dev/null; do /bin/sleep 0.05; done
    fi
    PORT=${port} BIND=127.0.0.1 /usr/bin/setsid "$toplevel/bin/printerfacts" </dev/null >>/run/fake-nixos/printerfacts.log 2>&1 &
    echo $! > "$pidfile"
  '';
}
