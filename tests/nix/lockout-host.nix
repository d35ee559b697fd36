# The printerfacts host with root's SSH login taken away (a staff account keeps NixOS from refusing it): a
# system that would lock the deployer, who logs in as root, out of the host. tests/it/host.rs deploys it to
# show that the deploy fails and the host goes back to the system it ran.
{ lib, ... }:
{
  imports = [ ../../examples/printerfacts/host.nix ];

  paranix.rootKeys = lib.mkForce [ ];
  paranix.users.alice = {
    groups = [ "wheel" ];
    keys = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMjMZEVrNjSKUUZXtB4AoN6oSSCMxnpts45zOEqlI5qT alice" ];
  };
}
