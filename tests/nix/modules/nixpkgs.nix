# What the nixpkgs modules behind options.nix do with paranix's settings, where a test's assertions depend on it.
# Each block is written from the NixOS 26.05 source it names (a 26.05-era tree, 2026-04/05; quoted in
# ../../../nix/README.md's sources and in the project's research notes), restricted to what matters here.
#
#   amazon: whether nixpkgs' virtualisation/amazon-image.nix (and the ec2-data.nix it imports) is part of the
#           evaluation, as nix/eval.nix has it.
{ amazon }:
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkIf mkDefault;
  sshd = config.services.openssh;
  users = config.users;
in
{
  config = lib.mkMerge [
    # virtualisation/amazon-image.nix: the settings that touch logins, services and disks (all at normal
    # priority unless marked).
    (mkIf amazon {
      fileSystems."/" = mkDefault {
        device = "/dev/disk/by-label/nixos";
        fsType = "ext4";
        autoResize = true;
      };
      fileSystems."/boot" = mkIf config.ec2.efi (mkDefault {
        device = "/dev/disk/by-label/ESP";
        fsType = "vfat";
      });
      boot.growPartition = true;
      boot.kernelParams = [
        "console=ttyS0,115200n8"
        "random.trust_cpu=on"
        "nvme_core.io_timeout=4294967295"
      ];
      boot.loader.grub.device = if config.ec2.efi then "nodev" else "/dev/xvda";
      boot.loader.grub.efiSupport = config.ec2.efi;
      # "Force getting the hostname from EC2."
      networking.hostName = mkDefault "";
      networking.timeServers = [ "169.254.169.123" ];
      # "Amazon-issued AMIs include the SSM Agent by default, so we do the same."
      services.amazon-ssm-agent.enable = true;
      # "Allow root logins only using the SSH key that the user specified at instance creation time."
      services.openssh.enable = true;
      services.openssh.settings.PermitRootLogin = "prohibit-password";
      systemd.services.fetch-ec2-metadata = {
        wantedBy = [ "multi-user.target" ];
        after = [ "network-online.target" ];
        serviceConfig.Type = "oneshot";
      };
    })

    # virtualisation/ec2-data.nix (imported by amazon-image.nix): apply-ec2-data appends the launch key to
    # /root/.ssh/authorized_keys when that file does not exist, and writes host keys from user data to
    # /etc/ssh; print-host-key prints /etc/ssh/ssh_host_*_key.pub to /dev/console.
    (mkIf amazon {
      systemd.services.apply-ec2-data = {
        wantedBy = [
          "multi-user.target"
          "sshd-keygen.service"
        ];
        after = [ "fetch-ec2-metadata.service" ];
        before = [ "sshd-keygen.service" ];
        serviceConfig.Type = "oneshot";
      };
      systemd.services.print-host-key = {
        wantedBy = [ "multi-user.target" ];
        after = [ "sshd-keygen.service" ];
        serviceConfig.Type = "oneshot";
      };
    })

    # virtualisation/amazon-init.nix
    (mkIf (amazon && config.virtualisation.amazon-init.enable) {
      systemd.services.amazon-init = {
        wantedBy = [ "multi-user.target" ];
        after = [ "multi-user.target" ];
      };
    })

    # services/misc/amazon-ssm-agent.nix: the agent, and passwordless sudo for its ssm-user.
    (mkIf config.services.amazon-ssm-agent.enable {
      systemd.services.amazon-ssm-agent.wantedBy = [ "multi-user.target" ];
      users.users.ssm-user = {
        group = "ssm-user";
        isNormalUser = true;
      };
      security.sudo.extraRules = [
        {
          users = [ "ssm-user" ];
          commands = [
            {
              command = "ALL";
              options = [ "NOPASSWD" ];
            }
          ];
        }
      ];
    })

    # services/networking/ssh/sshd.nix
    (mkIf sshd.enable {
      services.openssh.authorizedKeysFiles =
        lib.optional sshd.authorizedKeysInHomedir "%h/.ssh/authorized_keys" ++ [ "/etc/ssh/authorized_keys.d/%u" ];
      services.openssh.extraConfig = lib.mkOrder 0 (
        lib.concatStringsSep "\n" (
          lib.map (port: "Port ${toString port}") sshd.ports
          ++ lib.optional sshd.allowSFTP "Subsystem sftp internal-sftp"
          ++ [ "AuthorizedKeysFile ${toString sshd.authorizedKeysFiles}" ]
          ++ lib.map (k: "HostKey ${k.path}") sshd.hostKeys
        )
      );
      # One copied file per user with keys: /etc/ssh/authorized_keys.d/<user>, mode 0444, the keys joined by
      # newlines, then each key file's text, as sshd.nix's writeText template lays them out.
      environment.etc = lib.mapAttrs' (
        name: user:
        lib.nameValuePair "ssh/authorized_keys.d/${name}" {
          mode = "0444";
          text =
            lib.concatStringsSep "\n" user.openssh.authorizedKeys.keys
            + "\n"
            + lib.concatMapStrings (f: lib.readFile f + "\n") user.openssh.authorizedKeys.keyFiles
            + "\n";
        }
      ) (lib.filterAttrs (_: u: u.openssh.authorizedKeys.keys != [ ] || u.openssh.authorizedKeys.keyFiles != [ ]) users.users);
      networking.firewall.allowedTCPPorts = lib.optionals sshd.openFirewall sshd.ports;
      systemd.services.sshd = {
        wantedBy = [ "multi-user.target" ];
        after = [
          "network.target"
          "sshd-keygen.service"
        ];
      };
      systemd.services.sshd-keygen = {
        wantedBy = [ "multi-user.target" ];
        serviceConfig.Type = "oneshot";
      };
    })

    # config/users-groups.nix: a system nobody can log in to is refused.
    {
      assertions = [
        {
          assertion =
            !users.mutableUsers
            -> !users.allowNoPasswordLogin
            -> lib.any lib.id (
              lib.mapAttrsToList (
                name: user:
                (name == "root" || user.group == "wheel" || lib.elem "wheel" user.extraGroups)
                && (
                  # allowsLogin: a hash that is not "!"/"*"-like (a locked or disabled password).
                  (user.hashedPassword != null && !(lib.elem user.hashedPassword [ "" "!" "!!" "*" ]) && !(lib.hasPrefix "!" user.hashedPassword))
                  || user.password != null
                  || user.hashedPasswordFile != null
                  || user.openssh.authorizedKeys.keys != [ ]
                  || user.openssh.authorizedKeys.keyFiles != [ ]
                )
              ) users.users
            );
          message = ''
            Neither the root account nor any wheel user has a password or SSH authorized key.
            You must set one to prevent being locked out of your system.'';
        }
      ];
    }

    # security/auditd.nix
    (mkIf config.security.auditd.enable {
      security.audit.enable = mkDefault true;
      systemd.services.auditd.wantedBy = [ "multi-user.target" ];
    })
    (mkIf (config.security.audit.enable != false) {
      systemd.services.audit-rules-nixos.wantedBy = [ "sysinit.target" ];
    })

    # services/security/clamav.nix
    (mkIf config.services.clamav.daemon.enable { systemd.services.clamav-daemon.wantedBy = [ "multi-user.target" ]; })
    (mkIf config.services.clamav.updater.enable { systemd.services.clamav-freshclam.wantedBy = [ "multi-user.target" ]; })

    # services/networking/tailscale.nix
    (mkIf config.services.tailscale.enable { systemd.services.tailscaled.wantedBy = [ "multi-user.target" ]; })

    # services/web-servers/nginx
    (mkIf config.services.nginx.enable { systemd.services.nginx.wantedBy = [ "multi-user.target" ]; })

    # services/misc/nix-gc.nix
    (mkIf config.nix.gc.automatic { systemd.services.nix-gc.serviceConfig.Type = "oneshot"; })

    # tasks/filesystems.nix: "Sync mount options with systemd's src/core/mount-setup.c".
    {
      boot.specialFileSystems = {
        "/dev/shm" = {
          fsType = "tmpfs";
          options = [
            "nosuid"
            "nodev"
            "strictatime"
            "mode=1777"
            "size=50%"
          ];
        };
        "/run" = {
          fsType = "tmpfs";
          options = [
            "nosuid"
            "nodev"
            "strictatime"
            "mode=755"
            "size=25%"
          ];
        };
      };
    }
  ];
}
