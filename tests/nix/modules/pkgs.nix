# Stand-ins for the nixpkgs packages paranix's modules name: derivation-shaped attribute sets with fixed store
# paths, so options typed `package` accept them and scripts interpolate them, and nothing is built.
# `callPackage` and `rustPlatform.buildRustPackage` are real enough to evaluate nix/printerfacts.nix (its
# source filter included: the source is copied into the store).
{ lib, system }:
let
  fake =
    name: extra:
    {
      type = "derivation";
      inherit name system;
      outPath = "/nix/store/${builtins.substring 0 32 (builtins.hashString "sha256" name)}-${name}";
      meta = { };
    }
    // extra;
  pkgs = {
    inherit lib;
    stdenv.hostPlatform = {
      inherit system;
      isx86_64 = system == "x86_64-linux";
      isAarch64 = system == "aarch64-linux";
    };
    shadow = fake "shadow" { };
    bashInteractive = fake "bash-interactive" { shellPath = "/bin/bash"; };
    openssh = fake "openssh" { };
    perl = fake "perl" { };
    rsync = fake "rsync" { };
    strace = fake "strace" { };
    gnused = fake "gnused" { };
    coreutils = fake "coreutils" { };
    util-linux = fake "util-linux" { };
    e2fsprogs = fake "e2fsprogs" { };
    cloud-utils.guest = fake "cloud-utils-guest" { };
    # trivial-builders: the script's text is kept, so tests can read (and run) it.
    writeShellScript = name: text: fake name { inherit text; };
    rustPlatform.buildRustPackage =
      args:
      fake "${args.pname}-${args.version}" {
        inherit (args) src meta;
        inherit args;
      };
    callPackage =
      file: overrides:
      let
        f = import file;
      in
      f (builtins.intersectAttrs (builtins.functionArgs f) pkgs // overrides);
  };
in
pkgs
