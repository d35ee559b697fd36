# The printerfacts host: the NixOS half of the reference workflow (`cargo run --example printerfacts`).
#
# Values the Rust program knows (the domain, the generated deploy key, staff accounts) reach this file as a
# JSON file named by the PARANIX_VALUES environment variable at evaluation time:
#
#   PARANIX_VALUES=/path/to/values.json nix-build nix/image.nix
#
#   {
#     "hostname":   "printerfacts",                          (default "printerfacts")
#     "domain":     "printerfacts.example.com",              (default "printerfacts.example.invalid")
#     "acme_email": "ops@example.com",                       (set: Let's Encrypt + HTTPS; absent or null: HTTP only)
#     "root_keys":  [ "ssh-ed25519 AAAA... deploy@paranix" ],
#     "users":      { "alice": { "groups": [ "wheel" ], "keys": [ "ssh-ed25519 AAAA... alice" ] } }
#   }
#
# Every key is optional. Without PARANIX_VALUES the defaults below apply, and with no key at all nobody can log
# in: fine for building and testing the image, useless for a host you mean to deploy to. The variable is read
# with builtins.getEnv, so this works with nix-build / nix-instantiate (impure evaluation), not in pure flakes.
{ lib, ... }:
let
  valuesFile = builtins.getEnv "PARANIX_VALUES";
  values = if valuesFile == "" then { } else builtins.fromJSON (builtins.readFile valuesFile);
  value = name: default: if (values.${name} or null) == null then default else values.${name};

  acmeEmail = value "acme_email" null;
  rootKeys = value "root_keys" [ ];
  users = lib.mapAttrs (_: user: {
    groups = user.groups or [ ];
    keys = user.keys or [ ];
  }) (value "users" { });
  anyKey = rootKeys != [ ] || lib.any (user: user.keys != [ ]) (lib.attrValues users);
in
{
  imports = [ ../../common ];

  networking.hostName = value "hostname" "printerfacts";

  paranix = {
    inherit rootKeys users;
    paranoid = {
      enable = true;
      noexec = true;
    };
    services.printerfacts = {
      enable = true;
      # The #[host] in stacks.rs sets the domain (the instance's address) as a NixOS option; a "domain" value
      # or this default apply when nothing does.
      domain = lib.mkDefault (value "domain" "printerfacts.example.invalid");
      acme = {
        enable = acmeEmail != null;
        email = acmeEmail;
      };
    };
  };

  # NixOS refuses, on purpose, a system nobody can log in to; a keyless build is only for evaluation and tests.
  users.allowNoPasswordLogin = lib.mkDefault (!anyKey);

  system.stateVersion = "26.05";
}
