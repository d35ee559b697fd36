# The printerfacts service as a Nix package: `pkgs.callPackage ./printerfacts.nix { }`.
#
# It is built from the workspace (the root Cargo.toml and Cargo.lock) with `cargo build -p printerfacts`.
# Cargo loads the whole workspace before building one member, so every member's Cargo.toml must be present
# (without sdk/Cargo.toml cargo stops with "failed to load manifest for workspace member"). Their sources are
# not needed: `postPatch` gives each other member an empty src/lib.rs, which is all cargo looks for when it
# loads the workspace (checked with cargo 1.95; explicit target paths such as the sdk's examples are not read
# until those targets are built).
#
# The source filter (below) therefore takes only: Cargo.toml, Cargo.lock, the printerfacts crate (manifest, src,
# tests), and the other members' manifests. Editing the SDK or the examples does not change this derivation, so
# the host's system, and its image, are not rebuilt for it. (Changing a dependency of another member does: it
# changes Cargo.lock, which every member shares.)
#
# `cargoLock.lockFile` vendors every crate of the workspace lock (a fixed-output fetch per crate); printerfacts
# itself uses none of them, it has no dependencies.
{
  lib,
  rustPlatform,
}:
let
  workspace = lib.importTOML ../Cargo.toml;
  crate = "common/services/printerfacts";
  otherMembers = lib.remove crate workspace.workspace.members;
  root = toString ../.;

  # Repository-relative paths taken whole (with everything under them), and the directories leading to them.
  # A `builtins.path` filter rather than `lib.fileset`: the fileset library needs `builtins.readFileType`
  # (Nix 2.14+) since nixpkgs lib dropped its fallback in 2025, and this file must evaluate on older Nix too
  # (Debian 12's 2.8, where paranix's tests run).
  wanted = [
    "Cargo.toml"
    "Cargo.lock"
    "${crate}/Cargo.toml"
    "${crate}/src"
    "${crate}/tests"
  ]
  ++ map (member: "${member}/Cargo.toml") otherMembers;
  relative = path: lib.removePrefix "${root}/" (toString path);
  keep =
    path: _type:
    let
      rel = relative path;
    in
    lib.any (w: rel == w || lib.hasPrefix "${w}/" rel || lib.hasPrefix "${rel}/" w) wanted;
in
rustPlatform.buildRustPackage {
  pname = "printerfacts";
  inherit (workspace.workspace.package) version;

  src = builtins.path {
    name = "printerfacts-source";
    path = ../.;
    filter = keep;
  };

  cargoLock.lockFile = ../Cargo.lock;

  postPatch = ''
    for member in ${lib.escapeShellArgs otherMembers}; do
      mkdir -p "$member/src"
      touch "$member/src/lib.rs"
    done
  '';

  # The workspace's rust-version is the AWS SDK's MSRV; printerfacts needs only edition 2024 (Rust 1.85), so a
  # nixpkgs rustc older than the workspace MSRV must not stop this build.
  cargoBuildFlags = [
    "-p"
    "printerfacts"
    "--ignore-rust-version"
  ];
  # The checks are the crate's own tests, including real HTTP over loopback (allowed in the build sandbox).
  cargoTestFlags = [
    "-p"
    "printerfacts"
    "--ignore-rust-version"
  ];

  meta = {
    description = "A tiny HTTP service that tells the truth about printers";
    license = lib.licenses.asl20;
    mainProgram = "printerfacts";
    platforms = lib.platforms.linux;
  };
}
