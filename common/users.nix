# Staff accounts, declared as data:
#
#   paranix.users.alice = { groups = [ "wheel" ]; keys = [ "ssh-ed25519 AAAA... alice@laptop" ]; };
#
# Each entry becomes a normal user (see `mkUser`) that logs in with its SSH keys only. Accounts exist only
# because the configuration says so (`users.mutableUsers = false`): `useradd` or `passwd` on the host do not
# survive a rebuild, and on a paranoid host not even a reboot.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  inherit (lib) mkOption types;

  staffOptions = {
    options = {
      groups = mkOption {
        type = types.listOf types.str;
        default = [ ];
        example = [ "wheel" ];
        description = "Supplementary groups. `wheel` grants sudo (see security.sudo in default.nix).";
      };

      shell = mkOption {
        type = types.shellPackage;
        default = pkgs.bashInteractive;
        defaultText = lib.literalExpression "pkgs.bashInteractive";
        description = "Login shell. Shells other than bash need their `programs.<shell>.enable` as well.";
      };

      keys = mkOption {
        type = types.listOf (import ./types.nix { inherit lib; }).publicKey;
        default = [ ];
        description = "SSH public keys that may log in as this user. Without keys the account cannot log in.";
      };
    };
  };

  # One staff entry -> one `users.users` entry.
  mkUser = name: staff: {
    isNormalUser = true;
    description = "paranix staff account ${name}";
    extraGroups = staff.groups;
    inherit (staff) shell;
    openssh.authorizedKeys.keys = staff.keys;
  };
in
{
  options.paranix.users = mkOption {
    type = types.attrsOf (types.submodule staffOptions);
    default = { };
    example = lib.literalExpression ''
      {
        alice = { groups = [ "wheel" ]; keys = [ "ssh-ed25519 AAAAC3Nza... alice@laptop" ]; };
        bob.keys = [ "ssh-ed25519 AAAAC3Nza... bob@desk" ];
      }
    '';
    description = "Staff accounts. Attribute names are user names.";
  };

  config = {
    users.mutableUsers = false;
    users.users = lib.mapAttrs mkUser config.paranix.users;

    warnings = lib.mapAttrsToList (
      name: _: "paranix.users.${name} has no SSH keys, so the account cannot log in."
    ) (lib.filterAttrs (_: staff: staff.keys == [ ]) config.paranix.users);
  };
}
