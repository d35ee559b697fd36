# The host's NixOS system (`config.system.build.toplevel`): what a deploy copies to the host and switches to.
#
#   nix-build nix/host.nix                                                  # the printerfacts example
#   nix-build nix/host.nix --argstr configuration "$PWD/path/to/host.nix"   # another host
#   nix-instantiate nix/host.nix                                            # the .drv only (plan time, no build)
#
# A deployed system admits for root exactly the keys in `paranix.rootKeys` (paranix sets the deploy key there
# through PARANIX_VALUES); without any, NixOS refuses to evaluate it (nobody could log in).
{
  configuration ? ../examples/printerfacts/host.nix,
  sources ? import ./sources.nix,
  system ? builtins.currentSystem,
}:
(import ./eval.nix { inherit configuration sources system; }).config.system.build.toplevel
