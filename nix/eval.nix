# Evaluates a paranix host as an EC2 machine: nixpkgs' amazon-image profile, impermanence, and the modules of
# nix/modules.nix (common/ + the host's configuration + the options set from Rust).
#
# host.nix (the system a deploy switches to) and image.nix (the disk an AMI is made from) both come from here,
# so what is deployed and what is booted never differ in hardware setup; they differ only in `image` (the image
# is the bootstrap system: see nix/README.md, "Bootstrap").
#
#   import ./eval.nix { configuration = ../examples/printerfacts/host.nix; }   # -> { config, options, pkgs, ... }
{
  configuration ? ../examples/printerfacts/host.nix,
  sources ? import ./sources.nix,
  system ? builtins.currentSystem,
  image ? false,
}:
let
  # NixOS options set from Rust, in the JSON file PARANIX_VALUES names (written by paranix for each system).
  # The image never reads it: an AMI is evaluated from its configuration alone.
  valuesFile = if image then "" else builtins.getEnv "PARANIX_VALUES";
  fromRust = if valuesFile == "" then { } else builtins.fromJSON (builtins.readFile valuesFile);
in
import "${sources.nixpkgs}/nixos/lib/eval-config.nix" {
  inherit system;
  modules = [
    "${sources.nixpkgs}/nixos/modules/virtualisation/amazon-image.nix"
    # One source of truth for both pins: a caller's `sources` changes nixpkgs and impermanence together.
    "${sources.impermanence}/nixos.nix"
  ]
  ++ import ./modules.nix {
    inherit configuration image;
    options = fromRust.options or { };
  };
}
