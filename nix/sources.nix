# The pinned sources of nix/sources.json (niv's format), without niv.
#
#   sources = import ./nix/sources.nix;
#   pkgs = import sources.nixpkgs { };
#   imports = [ "${sources.impermanence}/nixos.nix" ];
#
# Each entry is the JSON record plus `outPath`, the store path of the unpacked tarball, so it interpolates and
# imports like a path (as niv's entries do) while `sources.nixpkgs.rev` etc. stay readable. Fetching is lazy:
# reading `.rev` downloads nothing.
#
# `builtins.fetchTarball` checks `sha256` (the NAR hash of the unpacked tree, in Nix's base32), so a changed
# or truncated download is rejected. Update a pin by editing `rev`, `url` and `sha256` together; the hash of a
# new rev is what `nix-prefetch-url --unpack <url>` prints (or `niv update`, which writes the same file).
#
# Escape hatch for offline work: PARANIX_SOURCE_<name>=/path/to/checkout uses a local tree instead of the
# tarball (for example PARANIX_SOURCE_nixpkgs=$HOME/src/nixpkgs). It is read with builtins.getEnv, so it only
# works in impure evaluation (nix-build / nix-instantiate, not flakes).
let
  spec = builtins.fromJSON (builtins.readFile ./sources.json);

  fetch =
    name: entry:
    let
      override = builtins.getEnv "PARANIX_SOURCE_${name}";
    in
    if override != "" then
      override
    else if (entry.type or null) != "tarball" then
      throw "nix/sources.json: '${name}' has type '${toString (entry.type or null)}'; only \"tarball\" is supported"
    else
      builtins.fetchTarball {
        name = "${name}-src";
        inherit (entry) url sha256;
      };
in
builtins.mapAttrs (name: entry: entry // { outPath = fetch name entry; }) spec
