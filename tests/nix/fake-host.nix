# A stand-in for nix/host.nix that needs no nixpkgs: same arguments, values from the PARANIX_VALUES JSON file
# (as the real host configuration reads them), and a fake NixOS toplevel from fake-system.nix. The values
# `tag` and `salt` choose the system, so changing a value in Rust changes the toplevel.
{
  configuration,
  system ? builtins.currentSystem,
}:
let
  values = builtins.fromJSON (builtins.readFile (builtins.getEnv "PARANIX_VALUES"));
in
assert builtins.pathExists configuration;
import ./fake-system.nix {
  inherit system;
  tag = values.tag;
  salt = values.salt;
}
