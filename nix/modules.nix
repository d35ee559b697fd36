# The paranix part of a host's module list, shared by nix/eval.nix (with nixpkgs' amazon-image profile and
# impermanence, for real builds) and tests/nix/modules/ (with declarations of the nixpkgs options these modules
# use, for module-logic tests with nixpkgs' lib only). Both evaluate exactly this list.
#
#   import ./modules.nix { configuration = ./host.nix; options = { paranix.rootKeys = [ ... ]; }; image = false; }
{
  # The host's configuration: a path, or an absolute path as a string (`--argstr configuration`, which also
  # works for paths with spaces).
  configuration,
  # NixOS options set from Rust (the `options` field of the PARANIX_VALUES JSON), shaped like a module's config.
  options ? { },
  # true when evaluating the disk image an AMI is made from (the bootstrap system), false for a deployed system.
  image ? false,
}:
[
  ../common
  (
    { lib, ... }:
    {
      paranix.bootstrap = image;

      # A paranix host takes its configuration from the image and from deploys only. amazon-init would fetch
      # user data at boot (readable by every process that can reach the instance metadata service) and apply
      # it as a NixOS configuration or run it as a script.
      virtualisation.amazon-init.enable = false;

      # The disk layout of nix/image.nix is the one paranoid.nix expects.
      paranix.paranoid.enable = lib.mkDefault true;
    }
  )
  # Values arrive as data (JSON parsed by Nix), never as Nix source text.
  {
    _file = "PARANIX_VALUES (NixOS options set from Rust)";
    config = options;
  }
  (if builtins.isString configuration then /. + configuration else configuration)
]
