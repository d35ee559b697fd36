# Declarations of the nixpkgs options that paranix's modules (common/, nix/modules.nix, the printerfacts host)
# set or read, for evaluating those modules with nixpkgs' lib alone (`lib.evalModules`), without the rest of
# nixpkgs. Each name, type and default is the NixOS 26.05 one, read from the nixpkgs sources (a 26.05-era tree,
# 2026-04/05: nixos/modules/... as named per option below). Options paranix never touches are not declared:
# setting one from paranix's modules fails the evaluation ("The option ... does not exist"), as it should.
#
# Only declarations live here; what nixpkgs' modules *do* with them (sshd's AuthorizedKeysFile line, the
# amazon-image profile's settings, ...) is in nixpkgs.nix.
{ lib, pkgs, ... }:
let
  inherit (lib) mkOption mkEnableOption types;

  # services/networking/ssh/sshd.nix: `settings` is a submodule with a freeform keyValue type; these are its
  # declared keys (all `nullOr`, null leaves the key out).
  sshdSettings = {
    freeformType = types.attrsOf (
      types.nullOr (
        types.oneOf [
          types.bool
          types.int
          types.str
          (types.listOf types.str)
        ]
      )
    );
    options = {
      PermitRootLogin = mkOption {
        type = types.nullOr (
          types.enum [
            "yes"
            "without-password"
            "prohibit-password"
            "forced-commands-only"
            "no"
          ]
        );
        default = "prohibit-password";
      };
      PasswordAuthentication = mkOption {
        type = types.nullOr types.bool;
        default = true;
      };
      KbdInteractiveAuthentication = mkOption {
        type = types.nullOr types.bool;
        default = true;
      };
      X11Forwarding = mkOption {
        type = types.nullOr types.bool;
        default = false;
      };
      UsePAM = mkOption {
        type = types.nullOr types.bool;
        default = true;
      };
    };
  };

  # config/users-groups.nix (user submodule, the fields paranix uses) + sshd.nix's `openssh.authorizedKeys`.
  userOptions = {
    options = {
      isNormalUser = mkOption {
        type = types.bool;
        default = false;
      };
      isSystemUser = mkOption {
        type = types.bool;
        default = false;
      };
      description = mkOption {
        type = types.passwdEntry types.str;
        default = "";
      };
      group = mkOption {
        type = types.str;
        default = "";
      };
      extraGroups = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      shell = mkOption {
        type = types.nullOr (types.either types.shellPackage (types.passwdEntry types.path));
        default = pkgs.shadow;
      };
      hashedPassword = mkOption {
        type = types.nullOr (types.passwdEntry types.str);
        default = null;
      };
      password = mkOption {
        type = types.nullOr types.str;
        default = null;
      };
      hashedPasswordFile = mkOption {
        type = types.nullOr types.str;
        default = null;
      };
      openssh.authorizedKeys = {
        keys = mkOption {
          type = types.listOf types.singleLineStr;
          default = [ ];
        };
        keyFiles = mkOption {
          type = types.listOf types.path;
          default = [ ];
        };
      };
    };
  };

  # system/boot/systemd.nix + lib/systemd-unit-options.nix: the service fields paranix and these stubs use.
  serviceOptions = {
    options = {
      enable = mkOption {
        type = types.bool;
        default = true;
      };
      description = mkOption {
        type = types.singleLineStr;
        default = "";
      };
      wantedBy = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      requiredBy = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      before = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      after = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      wants = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      requires = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      unitConfig = mkOption {
        type = types.attrsOf types.anything;
        default = { };
      };
      serviceConfig = mkOption {
        type = types.attrsOf types.anything;
        default = { };
      };
      environment = mkOption {
        type = types.attrsOf (types.nullOr (types.oneOf [ types.str types.path types.package ]));
        default = { };
      };
      path = mkOption {
        type = types.listOf (types.oneOf [ types.package types.str ]);
        default = [ ];
      };
      script = mkOption {
        type = types.lines;
        default = "";
      };
      scriptArgs = mkOption {
        type = types.str;
        default = "";
      };
      restartIfChanged = mkOption {
        type = types.bool;
        default = true;
      };
    };
  };

  # tasks/filesystems.nix (26.05: `fsType` has no default since PR #444829) + stage-1.nix (`neededForBoot`).
  fileSystemOptions =
    { name, ... }:
    {
      options = {
        enable = mkOption {
          type = types.bool;
          default = true;
        };
        mountPoint = mkOption {
          type = types.str;
          default = name;
        };
        device = mkOption {
          type = types.nullOr types.nonEmptyStr;
          default = null;
        };
        fsType = mkOption { type = types.nonEmptyStr; };
        options = mkOption {
          type = types.nonEmptyListOf types.nonEmptyStr;
          default = [ "defaults" ];
        };
        depends = mkOption {
          type = types.listOf types.nonEmptyStr;
          default = [ ];
        };
        autoResize = mkOption {
          type = types.bool;
          default = false;
        };
        neededForBoot = mkOption {
          type = types.bool;
          default = false;
        };
      };
    };
in
{
  options = {
    # misc/assertions.nix
    assertions = mkOption {
      type = types.listOf types.unspecified;
      default = [ ];
    };
    warnings = mkOption {
      type = types.listOf types.str;
      default = [ ];
    };

    system.stateVersion = mkOption { type = types.str; };

    # virtualisation/amazon-options.nix (imported by every NixOS evaluation): internal, untyped.
    ec2.efi = mkOption {
      default = pkgs.stdenv.hostPlatform.isAarch64;
      internal = true;
    };
    # virtualisation/amazon-init.nix
    virtualisation.amazon-init.enable = mkOption {
      type = types.bool;
      default = true;
    };
    # services/misc/amazon-ssm-agent.nix
    services.amazon-ssm-agent.enable = mkEnableOption "Amazon SSM agent";

    services.openssh = {
      enable = mkOption {
        type = types.bool;
        default = false;
      };
      allowSFTP = mkOption {
        type = types.bool;
        default = true;
      };
      openFirewall = mkOption {
        type = types.bool;
        default = true;
      };
      ports = mkOption {
        type = types.listOf types.port;
        default = [ 22 ];
      };
      authorizedKeysFiles = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      authorizedKeysInHomedir = mkOption {
        type = types.bool;
        default = true;
      };
      authorizedKeysCommand = mkOption {
        type = types.str;
        default = "none";
      };
      hostKeys = mkOption {
        type = types.listOf types.attrs;
        default = [
          {
            type = "rsa";
            bits = 4096;
            path = "/etc/ssh/ssh_host_rsa_key";
          }
          {
            type = "ed25519";
            path = "/etc/ssh/ssh_host_ed25519_key";
          }
        ];
      };
      settings = mkOption {
        type = types.submodule sshdSettings;
        default = { };
      };
      # What sshd.nix writes after `settings` (AuthorizedKeysFile among it, at mkOrder 0).
      extraConfig = mkOption {
        type = types.lines;
        default = "";
      };
    };
    # programs/ssh.nix
    programs.ssh.package = mkOption {
      type = types.package;
      default = pkgs.openssh;
    };

    users = {
      users = mkOption {
        type = types.attrsOf (types.submodule userOptions);
        default = { };
      };
      mutableUsers = mkOption {
        type = types.bool;
        default = true;
      };
      allowNoPasswordLogin = mkOption {
        type = types.bool;
        default = false;
      };
    };

    networking = {
      hostName = mkOption {
        type = types.strMatching "^$|^[[:alnum:]]([[:alnum:]_-]{0,61}[[:alnum:]])?$";
        default = "nixos";
      };
      firewall = {
        enable = mkOption {
          type = types.bool;
          default = true;
        };
        allowedTCPPorts = mkOption {
          type = types.listOf types.port;
          default = [ ];
          apply = ports: lib.unique (builtins.sort builtins.lessThan ports);
        };
        trustedInterfaces = mkOption {
          type = types.listOf types.str;
          default = [ ];
        };
        allowPing = mkOption {
          type = types.bool;
          default = true;
        };
      };
      timeServers = mkOption {
        type = types.listOf types.str;
        default = [
          "0.nixos.pool.ntp.org"
          "1.nixos.pool.ntp.org"
          "2.nixos.pool.ntp.org"
          "3.nixos.pool.ntp.org"
        ];
      };
    };

    # services/networking/tailscale.nix
    services.tailscale.enable = mkEnableOption "Tailscale client daemon";

    # security/auditd.nix, security/audit.nix
    security.auditd.enable = mkEnableOption "the Linux Audit daemon";
    security.audit = {
      enable = mkOption {
        type = types.enum [
          false
          true
          "lock"
        ];
        default = false;
      };
      rules = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
    };

    # security/sudo.nix
    security.sudo = {
      enable = mkOption {
        type = types.bool;
        default = true;
      };
      execWheelOnly = mkOption {
        type = types.bool;
        default = false;
      };
      wheelNeedsPassword = mkOption {
        type = types.bool;
        default = true;
      };
      extraRules = mkOption {
        type = types.listOf types.attrs;
        default = [ ];
      };
    };

    # config/system-path.nix
    environment.defaultPackages = mkOption {
      type = types.listOf types.package;
      default = [
        pkgs.perl
        pkgs.rsync
        pkgs.strace
      ];
    };
    environment.systemPackages = mkOption {
      type = types.listOf types.package;
      default = [ ];
    };
    # system/etc/etc.nix (the fields used here)
    environment.etc = mkOption {
      type = types.attrsOf (
        types.submodule {
          options = {
            enable = mkOption {
              type = types.bool;
              default = true;
            };
            text = mkOption {
              type = types.nullOr types.lines;
              default = null;
            };
            source = mkOption {
              type = types.nullOr types.path;
              default = null;
            };
            mode = mkOption {
              type = types.str;
              default = "symlink";
            };
          };
        }
      );
      default = { };
    };

    # services/security/clamav.nix
    services.clamav = {
      daemon.enable = mkEnableOption "ClamAV clamd daemon";
      daemon.settings = mkOption {
        type = types.attrsOf (types.oneOf [ types.bool types.int types.str (types.listOf types.str) ]);
        default = { };
      };
      updater.enable = mkEnableOption "ClamAV freshclam updater";
    };

    # services/misc/nix-gc.nix, config/nix.nix
    nix.gc = {
      automatic = mkOption {
        type = types.bool;
        default = false;
      };
      dates = mkOption {
        type = types.either types.singleLineStr (types.listOf types.str);
        default = [ "03:15" ];
        apply = lib.toList;
      };
      options = mkOption {
        type = types.singleLineStr;
        default = "";
      };
    };
    nix.settings = mkOption {
      type = types.attrsOf types.anything;
      default = { };
    };

    boot = {
      # system/boot/tmp.nix
      tmp.cleanOnBoot = mkOption {
        type = types.bool;
        default = false;
      };
      # system/boot/loader/grub/grub.nix
      loader.grub = {
        configurationLimit = mkOption {
          type = types.int;
          default = 100;
        };
        extraInstallCommands = mkOption {
          type = types.lines;
          default = "";
        };
        device = mkOption {
          type = types.str;
          default = "";
        };
        efiSupport = mkOption {
          type = types.bool;
          default = false;
        };
      };
      # system/boot/grow-partition.nix
      growPartition = mkEnableOption "growing the root partition on boot";
      # system/boot/kernel.nix
      kernelParams = mkOption {
        type = types.listOf types.str;
        default = [ ];
      };
      # tasks/filesystems.nix: internal, the mounts systemd's mount-setup.c makes.
      specialFileSystems = mkOption {
        type = types.attrsOf (types.submodule fileSystemOptions);
        default = { };
      };
    };

    fileSystems = mkOption {
      type = types.attrsOf (types.submodule fileSystemOptions);
      default = { };
    };

    # system/boot/systemd.nix: mount units (impermanence's bind mounts are made here).
    systemd.mounts = mkOption {
      type = types.listOf types.attrs;
      default = [ ];
    };
    systemd.services = mkOption {
      type = types.attrsOf (types.submodule serviceOptions);
      default = { };
    };

    # services/web-servers/nginx (the fields the printerfacts module uses)
    services.nginx = {
      enable = mkEnableOption "Nginx Web Server";
      recommendedProxySettings = mkOption {
        type = types.bool;
        default = false;
      };
      recommendedTlsSettings = mkOption {
        type = types.bool;
        default = false;
      };
      recommendedOptimisation = mkOption {
        type = types.bool;
        default = false;
      };
      virtualHosts = mkOption {
        type = types.attrsOf (
          types.submodule {
            options = {
              enableACME = mkOption {
                type = types.bool;
                default = false;
              };
              forceSSL = mkOption {
                type = types.bool;
                default = false;
              };
              locations = mkOption {
                type = types.attrsOf (
                  types.submodule {
                    options.proxyPass = mkOption {
                      type = types.nullOr types.str;
                      default = null;
                    };
                  }
                );
                default = { };
              };
            };
          }
        );
        default = { };
      };
    };

    # security/acme
    security.acme = {
      acceptTerms = mkOption {
        type = types.bool;
        default = false;
      };
      defaults.email = mkOption {
        type = types.nullOr types.str;
        default = null;
      };
    };
  };
}
