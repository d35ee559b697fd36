# The paranix baseline, imported by every host: who may log in and how, what is recorded, what is installed.
#
# Options live under `paranix.*` (this file, users.nix, paranoid.nix, services/). Option names are NixOS 26.05's:
# several names of the 2021 blog were renamed since (nix.autoOptimiseStore, services.openssh.passwordAuthentication,
# boot.cleanTmpDir, security.acme.email, ...); tests/it/nix_files.rs rejects the old names.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.paranix;
  inherit (lib) mkOption types;
in
{
  imports = [
    ./users.nix
    ./paranoid.nix
    ./services
  ];

  options.paranix = {
    rootKeys = mkOption {
      type = types.listOf types.singleLineStr;
      default = [ ];
      example = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... deploy@paranix" ];
      description = ''
        SSH public keys that may log in as root (key only, never a password). Deploys copy closures and switch
        the system as root, so this is normally the deploy key. When empty, root cannot log in over SSH at all.
      '';
    };

    ssh.allowSFTP = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Whether sshd offers the SFTP subsystem. Off by default: nothing on a paranix host needs file transfer
        beyond what `nix copy` does over a plain SSH session.
      '';
    };

    audit.execve = mkOption {
      type = types.bool;
      default = true;
      description = "Whether the kernel audit log records every program execution (execve) on the host.";
    };

    antivirus.enable = mkOption {
      type = types.bool;
      default = true;
      description = ''
        Whether to run the ClamAV daemon and the freshclam signature updater. clamd holds its signature
        database in memory (over 1 GiB), so instances with less RAM should turn this off.
      '';
    };
  };

  config = {
    users.users.root.openssh.authorizedKeys.keys = cfg.rootKeys;

    # Administration happens over the tailnet; its interface is trusted, everything else goes through the
    # firewall. `tailscale up` (with an auth key) is left to the operator; the node key lives in
    # /var/lib/tailscale, which paranoid.nix persists.
    services.tailscale.enable = true;
    networking.firewall.enable = true;
    networking.firewall.trustedInterfaces = [ "tailscale0" ];

    # Record who ran what: auditd writes the kernel audit log to /var/log/audit (persisted).
    security.auditd.enable = true;
    security.audit = {
      enable = true;
      rules = lib.optionals cfg.audit.execve (
        [ "-a always,exit -F arch=b64 -S execve" ]
        # On x86_64, 32-bit programs enter the kernel through a separate syscall table.
        ++ lib.optional pkgs.stdenv.hostPlatform.isx86_64 "-a always,exit -F arch=b32 -S execve"
      );
    };

    # sudo for the wheel group only: the sudo wrapper is not even executable by other users.
    security.sudo = {
      enable = true;
      execWheelOnly = true;
      # Staff accounts have SSH keys and no passwords (users.nix), so sudo could never ask for one. The gate
      # is the key plus wheel membership.
      wheelNeedsPassword = false;
    };

    # Nothing installed "just in case": every tool on the host is there because the configuration asks for it.
    environment.defaultPackages = lib.mkForce [ ];

    services.openssh = {
      enable = true;
      allowSFTP = cfg.ssh.allowSFTP;
      settings = {
        PasswordAuthentication = false;
        KbdInteractiveAuthentication = false;
        AuthenticationMethods = "publickey";
        # The amazon-image profile sets "prohibit-password"; the root login follows `paranix.rootKeys`.
        PermitRootLogin = lib.mkForce (if cfg.rootKeys == [ ] then "no" else "prohibit-password");
        AllowAgentForwarding = false;
        AllowStreamLocalForwarding = false;
        X11Forwarding = false;
      };
    };

    services.clamav = lib.mkIf cfg.antivirus.enable {
      daemon.enable = true;
      updater.enable = true;
    };

    nix.settings = {
      auto-optimise-store = true;
      # Only root and wheel may talk to the Nix daemon.
      allowed-users = [ "@wheel" ];
    };

    # Redundant with the tmpfs root of paranoid.nix, but keeps /tmp clean on non-paranoid hosts too.
    boot.tmp.cleanOnBoot = true;
  };
}
