# A stand-in for nix/host.nix for the printerfacts end-to-end test (tests/it/host.rs): the same arguments and
# the same PARANIX_VALUES JSON file the real evaluation reads (NixOS options set from Rust under `options`),
# but no nixpkgs and no NixOS: a fake toplevel (fake-system.nix) whose activation starts the real
# printerfacts service binary on the target, as systemd would on NixOS.
#
#   options.paranix.services.printerfacts.domain   written to <toplevel>/etc/printerfacts-domain
#   options.test.printerfacts.bin                   the service binary (built by cargo), copied into the toplevel
#   options.test.printerfacts.port                  the port it listens on (127.0.0.1)
#
# Every option value feeds the toplevel's name, so changing any option from Rust gives a new system.
{
  configuration,
  system ? builtins.currentSystem,
}:
let
  values = builtins.fromJSON (builtins.readFile (builtins.getEnv "PARANIX_VALUES"));
  options = values.options;
  domain = options.paranix.services.printerfacts.domain;
  service = options.test.printerfacts;
  bin = builtins.path {
    path = /. + service.bin;
    name = "printerfacts-service";
  };
  port = toString service.port;
in
assert builtins.pathExists configuration;
import ./fake-system.nix {
  inherit system;
  tag = "printerfacts-${builtins.substring 0 12 (builtins.hashString "sha256" (builtins.toJSON options))}";
  salt = "printerfacts";
  nPkgs = 1;
  extraBuild = ''
    /bin/mkdir -p $out/etc
    printf '%s\n' '${domain}' > $out/etc/printerfacts-domain
    /bin/cp ${bin} $out/bin/printerfacts
  '';
  # Stop the previous generation's service (if any), start this one's, detached from the SSH session.
  activate = ''
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
