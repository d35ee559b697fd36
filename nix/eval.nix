# Evaluates a paranix host as an EC2 machine: nixpkgs' amazon-image profile + common/ + the host's configuration.
#
# host.nix (the system a deploy switches to) and image.nix (the disk an AMI is made from) both come from this one
# evaluation, so what is deployed and what is booted never differ in hardware setup.
#
#   import ./eval.nix { configuration = ../examples/printerfacts/host.nix; }   # -> { config, options, pkgs, ... }
{
  configuration ? ../examples/printerfacts/host.nix,
  sources ? import ./sources.nix,
  system ? builtins.currentSystem,
}:
let
  valuesFile = builtins.getEnv "PARANIX_VALUES";
  fromRust = if valuesFile == "" then { } else builtins.fromJSON (builtins.readFile valuesFile);
in
import "${sources.nixpkgs}/nixos/lib/eval-config.nix" {
  inherit system;
  modules = [
    "${sources.nixpkgs}/nixos/modules/virtualisation/amazon-image.nix"
    ../common
    (
      { lib, ... }:
      {
        # A paranix host takes its configuration from the image only. amazon-init would fetch user data at boot
        # (readable by every process that can reach the instance metadata service) and apply it as a NixOS
        # configuration or run it as a script.
        virtualisation.amazon-init.enable = false;

        # EBS volumes are NVMe devices on Nitro instances; the kernel must never time out their I/O (nixpkgs'
        # own amazon image builder sets the same parameter).
        boot.kernelParams = [ "nvme_core.io_timeout=4294967295" ];

        # The disk layout of nix/image.nix is the one paranoid.nix expects.
        paranix.paranoid.enable = lib.mkDefault true;
      }
    )
    # NixOS options set from Rust (`#[host(nixos(...))]`, `nixos::System::option`): the `options` field of the
    # PARANIX_VALUES JSON file, an attribute set shaped like a module's config, merged as a module. Values
    # arrive as data (JSON), never as Nix source text.
    {
      _file = "PARANIX_VALUES (NixOS options set from Rust)";
      config = fromRust.options or { };
    }
    configuration
  ];
}
