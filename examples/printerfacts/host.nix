# The printerfacts host: the NixOS half of the reference workflow (`cargo run --example printerfacts`).
#
# Everything the Rust program knows reaches this configuration as NixOS options set from Rust (`#[host(nixos(
# ...))]` in stacks.rs, plus what paranix sets on every host: `paranix.rootKeys`, the deploy key pair's public
# half, and `paranix.host.memoryMiB`), as data in the JSON file PARANIX_VALUES names. Evaluated without them
# (`nix-build nix/host.nix` by hand), root has no key and NixOS refuses the system: nobody could log in.
{ lib, ... }:
{
  imports = [ ../../common ];

  # Above amazon-image's `mkDefault ""` (which would take the name from the metadata service), below a plain
  # setting from Rust (`nixos(networking.hostName = ...)`).
  networking.hostName = lib.mkOverride 900 "printerfacts";

  paranix = {
    paranoid = {
      enable = true;
      noexec = true;
    };
    services.printerfacts = {
      enable = true;
      # The #[host] in stacks.rs sets the domain to the instance's public address; this applies otherwise.
      domain = lib.mkDefault "printerfacts.example.invalid";
    };
  };

  system.stateVersion = "26.05";
}
