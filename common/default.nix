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
  inherit (import ./types.nix { inherit lib; }) publicKey;

  # The console block, one public key file per argument: cloud-init's format (its
  # tools/write-ssh-key-fingerprints), which nixpkgs' print-host-key also prints since PR #442408. Every line
  # is complete or the block is not ended: a reader takes only blocks with both markers.
  printHostKeys = ''
    echo "-----BEGIN SSH HOST KEY FINGERPRINTS-----"
    for key in "$@"; do
      ssh-keygen -l -f "$key" || true
    done
    echo "-----END SSH HOST KEY FINGERPRINTS-----"
    echo "-----BEGIN SSH HOST KEY KEYS-----"
    for key in "$@"; do
      cat "$key"
    done
    echo "-----END SSH HOST KEY KEYS-----"
  '';
in
{
  imports = [
    ./users.nix
    ./paranoid.nix
    ./services
  ];

  options.paranix = {
    bootstrap = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Whether this evaluation is the bootstrap system: the disk image an AMI is made from (nix/image.nix sets
        it). Until the first deploy, root logs in with the EC2 launch key, which nixpkgs' `apply-ec2-data`
        writes to /root/.ssh/authorized_keys at boot, and with nothing else; `rootKeys` are not admitted.
        A deployed system (false) admits exactly `rootKeys` for root and no key from a home directory.
        See nix/README.md, "Bootstrap".
      '';
    };

    rootKeys = mkOption {
      type = types.listOf publicKey;
      default = [ ];
      example = [ "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI... deploy@paranix" ];
      description = ''
        SSH public keys that may log in as root on a deployed system (key only, never a password). Deploys copy
        closures and switch the system as root, so this holds the deploy key: `#[host]` and `HostSpec` set it to
        the deploy key pair's public half (plus `HostSpec::root_key`s). When empty, root cannot log in over SSH
        at all. Ignored on the bootstrap image, which admits the EC2 launch key only.
      '';
    };

    deployUser = {
      name = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "deploy";
        description = ''
          A non-root account deploys log in as (`HostSpec::ssh_user`, which sets this and `keys`), running their
          root steps through `sudo`. It is in `wheel` (passwordless sudo, see `security.sudo`) and in Nix's
          `trusted-users`, so it may copy unsigned closures into the store. Trade-off: a trusted Nix user can
          become root, but this one already can through sudo, so trusting it adds no power, while signing
          closures instead would need a signing key on every deploying machine (and, before Nix 2.17, a root or
          trusted signer there). Root then needs no key at all (`PermitRootLogin no`).
        '';
      };

      keys = mkOption {
        type = types.listOf publicKey;
        default = [ ];
        description = "SSH public keys of the deploy account (the deploy key pair's public half).";
      };
    };

    host.memoryMiB = mkOption {
      type = types.nullOr types.ints.positive;
      default = null;
      example = 1024;
      description = ''
        The machine's memory in MiB when it is under 2 GiB (`#[host]` and `HostSpec` set it from the EC2 instance
        type: t3.micro is 1024). null: 2 GiB or more, or not known. Services that do not fit are off by default.
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

    ssmAgent.enable = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Whether to run the AWS Systems Manager agent, which nixpkgs' amazon-image profile turns on. Off by
        default: it is a root shell through AWS APIs (Session Manager, Run Command), outside SSH, the declared
        keys and the wheel gate, for any AWS principal allowed `ssm:StartSession` on the instance; nixpkgs also
        gives its `ssm-user` passwordless sudo. With `paranix.paranoid.noexec`, Run Command's shell scripts (run
        from /var/lib) cannot execute.
      '';
    };

    audit = {
      execve = mkOption {
        type = types.bool;
        default = true;
        description = "Whether the kernel audit log records every program execution (execve) on the host.";
      };

      lock = mkOption {
        type = types.bool;
        default = false;
        description = ''
          Lock the audit rules in the kernel (`security.audit.enable = "lock"`, `auditctl -e 2`): not even root
          can change or delete them until the next reboot. A deploy that changes the rules then fails (the
          rules service cannot reload them) and rolls back; change them with a `boot` deploy and a reboot.
        '';
      };
    };

    antivirus.enable = mkOption {
      type = types.bool;
      default = !cfg.bootstrap && (cfg.host.memoryMiB == null || cfg.host.memoryMiB >= 2048);
      defaultText = lib.literalExpression "!config.paranix.bootstrap && (config.paranix.host.memoryMiB == null || config.paranix.host.memoryMiB >= 2048)";
      description = ''
        Whether to run the ClamAV daemon and the freshclam signature updater. clamd holds its signature
        database in memory (over 1 GiB), so it is off by default on machines under 2 GiB (`host.memoryMiB`),
        where it would be killed at every switch and every deploy would roll back, and on the bootstrap image
        (it boots on any instance type; the first deploy turns it on where it fits). clamd reloads its signatures
        in place (`services.clamav.daemon.settings.ConcurrentDatabaseReload` defaults to off here: a concurrent
        reload holds a second copy for a while each day, which a 2 GiB machine cannot; turn it back on with
        4 GiB or more to keep scanning during reloads). ClamAV's documentation recommends 3 GiB and more, so
        4 GiB leaves headroom. An assertion refuses the daemon, however it was turned on, under 2 GiB.
      '';
    };

    generations = mkOption {
      type = types.ints.positive;
      default = if (config.ec2.efi or false) then 5 else 20;
      defaultText = lib.literalExpression "if config.ec2.efi then 5 else 20";
      description = ''
        How many system generations the boot menu keeps (`boot.loader.grub.configurationLimit`; nixpkgs' default
        is 100). On UEFI, GRUB copies each generation's kernel and initrd onto the EFI system partition (about
        90 MiB per aarch64 generation), which nix/image.nix makes 1 GiB: 5 fit. Older generations are
        collected by `nix.gc` after 30 days.
      '';
    };
  };

  config = {
    # Who may log in as root. The image (bootstrap): the EC2 launch key that apply-ec2-data writes to
    # /root/.ssh/authorized_keys, and nothing declared. A deployed system: exactly `rootKeys`, from
    # /etc/ssh/authorized_keys.d/root; home directories are not read, so the launch key that apply-ec2-data keeps
    # writing at every boot (/root is a tmpfs on paranoid hosts) is ignored from the first deploy on. Trade-off:
    # apply-ec2-data stays (on hosts without a declared host name it also sets the name from the metadata) rather
    # than being patched; its key write is made harmless here instead of removed.
    users.users = lib.mkMerge [
      { root.openssh.authorizedKeys.keys = lib.mkIf (!cfg.bootstrap) cfg.rootKeys; }
      (lib.mkIf (cfg.deployUser.name != null) {
        ${cfg.deployUser.name} = {
          isNormalUser = true;
          description = "paranix deploys";
          extraGroups = [ "wheel" ];
          openssh.authorizedKeys.keys = cfg.deployUser.keys;
        };
      })
    ];
    services.openssh.authorizedKeysInHomedir = cfg.bootstrap;
    # NixOS refuses a system nobody can log in to; the image's login is the launch key, which it cannot see.
    users.allowNoPasswordLogin = lib.mkIf cfg.bootstrap (lib.mkDefault true);

    nix.settings.trusted-users = lib.mkIf (cfg.deployUser.name != null) [ cfg.deployUser.name ];

    # "Exactly the keys declared for it": nothing else may add a way in for root on a deployed system.
    assertions = [
      {
        # Every way in (paranix.antivirus.enable, services.clamav.daemon.enable, the host's own modules).
        assertion = !config.services.clamav.daemon.enable || cfg.host.memoryMiB == null || cfg.host.memoryMiB >= 2048;
        message = "paranix: the ClamAV daemon holds its signatures in over 1 GiB; on this ${toString cfg.host.memoryMiB} MiB machine it would be killed for lack of memory and every deploy would roll back. Pick an instance type with 4 GiB (t3.medium) or more, or leave the antivirus off.";
      }
    ]
    ++ lib.optionals (!cfg.bootstrap) [
      {
        assertion =
          config.users.users.root.openssh.authorizedKeys.keys == cfg.rootKeys
          && config.users.users.root.openssh.authorizedKeys.keyFiles == [ ];
        message = "paranix: root's SSH keys on a deployed system are exactly paranix.rootKeys; declare extra keys there (HostSpec::root_key), not in users.users.root.openssh.authorizedKeys.";
      }
      {
        assertion =
          config.services.openssh.authorizedKeysFiles == [ "/etc/ssh/authorized_keys.d/%u" ]
          && (config.services.openssh.settings.AuthorizedKeysFile or null) == null
          && config.services.openssh.authorizedKeysCommand == "none";
        message = "paranix: a deployed system reads SSH keys from /etc/ssh/authorized_keys.d only (the declared ones); services.openssh.authorizedKeysFiles, settings.AuthorizedKeysFile and authorizedKeysCommand would let other keys in.";
      }
    ];

    services.amazon-ssm-agent.enable = lib.mkForce cfg.ssmAgent.enable;

    # Administration happens over the tailnet; its interface is trusted, everything else goes through the
    # firewall. `tailscale up` (with an auth key) is left to the operator; the node key lives in
    # /var/lib/tailscale, which paranoid.nix persists.
    services.tailscale.enable = true;
    networking.firewall.enable = true;
    networking.firewall.trustedInterfaces = [ "tailscale0" ];

    # Record who ran what: auditd writes the kernel audit log to /var/log/audit (persisted).
    security.auditd.enable = true;
    security.audit = {
      enable = if cfg.audit.lock then "lock" else true;
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
        # amazon-image sets "prohibit-password" (at normal priority, hence mkForce). Root logs in with a key
        # or not at all: the launch key on the image, `rootKeys` once deployed.
        PermitRootLogin = lib.mkForce (
          if cfg.bootstrap || cfg.rootKeys != [ ] then "prohibit-password" else "no"
        );
        AllowAgentForwarding = false;
        AllowStreamLocalForwarding = false;
        X11Forwarding = false;
      };
    };

    # The host key on the serial console, where `host_key = console` reads it through the EC2 API
    # (GetConsoleOutput), in cloud-init's format. nixpkgs' own printer (print-host-key, ec2-data.nix) only reads
    # /etc/ssh/ssh_host_*_key.pub, where paranoid hosts keep no key (their key lives in /nix/persist, and a
    # `.pub` link there would let apply-ec2-data overwrite the persisted public key from user data), so paranix
    # prints the keys sshd actually uses, at every boot, whatever the nixpkgs pin prints.
    systemd.services.print-host-key.enable = false;
    systemd.services.paranix-print-host-key = {
      description = "Print the SSH host keys on the serial console";
      wantedBy = [ "multi-user.target" ];
      after = [ "sshd-keygen.service" ];
      wants = [ "sshd-keygen.service" ];
      serviceConfig = {
        Type = "oneshot";
        RemainAfterExit = true;
        StandardOutput = "tty";
        TTYPath = "/dev/console";
      };
      path = [ config.programs.ssh.package ];
      scriptArgs = lib.concatMapStringsSep " " (key: lib.escapeShellArg "${key.path}.pub") config.services.openssh.hostKeys;
      script = printHostKeys;
    };

    services.clamav = lib.mkIf cfg.antivirus.enable {
      daemon.enable = true;
      # Reloading the signatures next to the loaded ones doubles clamd's memory for a while (ClamAV recommends
      # 3 GiB and more with it on); reloading in place pauses scanning instead.
      daemon.settings.ConcurrentDatabaseReload = lib.mkDefault false;
      updater.enable = true;
    };

    # Old generations go: a bounded boot menu (and ESP on UEFI), and a store that does not grow forever.
    boot.loader.grub.configurationLimit = lib.mkDefault cfg.generations;
    nix.gc = {
      automatic = lib.mkDefault true;
      dates = lib.mkDefault "weekly";
      options = lib.mkDefault "--delete-older-than 30d";
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
