# impermanence (nix-community/impermanence at 7b1d382, the pin in nix/sources.json): the `environment.persistence`
# declarations paranix uses (nixos.nix + submodule-options.nix) and what the module does with them, for module-
# logic tests without the source tree. The real module is imported by nix/eval.nix.
#
# - directories are mounted by `systemd.mounts` entries (type "none", options "bind" plus "x-gvfs-hide" when
#   hidden; no other mount option exists), never by `fileSystems`;
# - its assertions check `fileSystems.<p>.neededForBoot` (the option value) of every persistent storage path
#   and of every parent of a persisted path that is declared in `fileSystems`.
{ config, lib, ... }:
let
  inherit (lib) mkOption types;

  directory = types.submodule {
    options.directory = mkOption { type = types.str; };
    options.mode = mkOption {
      type = types.str;
      default = "0755";
    };
  };
  file = types.submodule { options.file = mkOption { type = types.str; }; };

  persistence = types.submodule (
    { name, ... }:
    {
      options = {
        enable = mkOption {
          type = types.bool;
          default = true;
        };
        persistentStoragePath = mkOption {
          type = types.str;
          default = name;
        };
        hideMounts = mkOption {
          type = types.bool;
          default = false;
        };
        directories = mkOption {
          type = types.listOf (types.coercedTo types.str (d: { directory = d; }) directory);
          default = [ ];
        };
        files = mkOption {
          type = types.listOf (types.coercedTo types.str (f: { file = f; }) file);
          default = [ ];
        };
      };
    }
  );

  enabled = lib.filter (p: p.enable) (lib.attrValues config.environment.persistence);
  mounts = lib.concatMap (
    p:
    map (d: {
      where = d.directory;
      what = "${p.persistentStoragePath}${d.directory}";
      type = "none";
      options = lib.concatStringsSep "," ([ "bind" ] ++ lib.optional p.hideMounts "x-gvfs-hide");
    }) p.directories
  ) enabled;
  parentsOf =
    path:
    let
      parts = lib.filter (s: s != "") (lib.splitString "/" path);
    in
    [ "/" ] ++ lib.genList (i: "/" + lib.concatStringsSep "/" (lib.take (i + 1) parts)) (lib.length parts - 1);
  markedNeededForBoot =
    fs: if config.fileSystems ? ${fs} then config.fileSystems.${fs}.neededForBoot else true;
  storagePaths = lib.unique (map (p: p.persistentStoragePath) enabled);
  allPaths = lib.unique (
    lib.concatMap (p: lib.concatMap parentsOf (map (d: d.directory) p.directories ++ map (f: f.file) p.files)) enabled
  );
in
{
  options.environment.persistence = mkOption {
    type = types.attrsOf persistence;
    default = { };
  };

  config = {
    systemd.mounts = mounts;
    assertions = [
      {
        assertion = lib.all markedNeededForBoot storagePaths;
        message = ''All filesystems used for persistent storage must have the option "neededForBoot" set to true.'';
      }
      {
        assertion = lib.all markedNeededForBoot allPaths;
        message = ''All filesystems used for ephemeral storage must have the option "neededForBoot" set to true.'';
      }
    ];
  };
}
