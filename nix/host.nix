# The host's NixOS system (`config.system.build.toplevel`): what a deploy copies to the host and switches to.
#
#   nix-build nix/host.nix                                            # the printerfacts example
#   nix-build nix/host.nix --arg configuration ./path/to/host.nix     # another host
#   nix-instantiate nix/host.nix                                      # the .drv only (plan time, no build)
{
  configuration ? ../examples/printerfacts/host.nix,
  sources ? import ./sources.nix,
  system ? builtins.currentSystem,
}:
(import ./eval.nix { inherit configuration sources system; }).config.system.build.toplevel
