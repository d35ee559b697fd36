# Paranoid mode: the root filesystem is a tmpfs, so every boot starts from the configuration alone. Only the
# state listed here (impermanence's `environment.persistence`) and the Nix store survive a reboot; anything else
# an intruder or a careless admin writes is gone at the next boot.
#
# Disk layout, shared with nix/image.nix (which builds the disk) and nix/tests/paranoid.nix (which boots it):
#
#   disk (EBS volume, or the test VM's disk)
#   └─ partition labelled "nixos", ext4   mounted at /disk (neededForBoot, grown to the disk at boot)
#      ├─ nix/        store, Nix database, profiles   -> /nix        bind mount of /disk/nix  (neededForBoot)
#      │  └─ persist/ state kept across reboots       -> /nix/persist, impermanence's source for /var/lib, ...
#      ├─ boot/       GRUB (legacy BIOS boot)         -> /boot       bind mount of /disk/boot
#      └─ etc/, ...   written by the image builder, unused at run time
#   /                 tmpfs (size 2G)
#
# Why not simply mount the partition at /nix, as a hand-partitioned machine would? nixpkgs' image builder
# (lib/make-disk-image.nix, which the amazon image uses too) installs a complete NixOS into one filesystem, so
# the store is at <partition>/nix/store: mounted at /nix that becomes /nix/nix/store and nothing boots. Mounting
# the partition at /disk and bind-mounting its nix/ directory onto /nix keeps the stock builder, and keeps the
# store at the path GRUB's configuration (written inside the builder, where the partition is /) points to.
#
# Known limit and its workaround: when GRUB's configuration is regenerated on the host (a deploy runs
# switch-to-configuration), nixpkgs' install-grub.pl resolves /nix/store and /boot against the bind mounts'
# mount points, not their place on the partition, and writes "($drive)/store/..." where the file is at
# "/nix/store/..." (nixpkgs issue #309912; the fix, PR #374398, was not merged when this was written). The
# `extraInstallCommands` below rewrite those paths after every GRUB install. UEFI hosts (`ec2.efi`) keep the ESP
# at /boot, copy kernels there and are not affected.
{
  config,
  lib,
  pkgs,
  utils,
  ...
}:
let
  cfg = config.paranix.paranoid;
  inherit (lib) mkOption mkEnableOption types;

  # Where persisted state lives: on the partition, inside the /nix bind mount.
  persist = "/nix/persist";

  hostKey = "${persist}/etc/ssh/ssh_host_ed25519_key";

  disk = cfg.disk;

  # Remounts each argument, and every mount below it, noexec,nosuid,nodev (see paranix-noexec-mounts).
  noexecScript = pkgs.writeShellScript "paranix-noexec-mounts" ''
    set -eu
    PATH=${lib.makeBinPath [ pkgs.util-linux ]}
    if ! mountpoint -q ${persist}; then
      # Recursive: the persisted directories mounted inside one another (/var/lib/nixos in /var/lib) show up
      # below /nix/persist too, by propagation.
      mount --rbind ${persist} ${persist}
    fi
    for target in "$@"; do
      findmnt -rn -o TARGET -R "$target" | while read -r mounted; do
        # A mount hidden under a later one is listed but cannot be reached by its path (nor executed from).
        if mountpoint -q "$mounted"; then
          mount -o remount,bind,noexec,nosuid,nodev "$mounted"
        fi
      done
    done
  '';

  # State kept across reboots (impermanence's bind mounts from /nix/persist).
  persistedDirectories = [
    "/etc/nixos"
    "/srv"
    "/var/lib"
    "/var/log"
    # Inside /var/lib already. Listed on its own because it holds the uid/gid allocations, which must never
    # be lost: it stays persisted if /var/lib is ever narrowed to a few service directories.
    "/var/lib/nixos"
  ];

  # Where `noexec` puts noexec,nosuid,nodev besides the tmpfs root: every path under which persisted files can
  # be reached.
  noexecMounts =
    persistedDirectories
    ++ [
      persist
      disk.mountPoint
    ]
    ++ lib.optional disk.bindBoot "/boot";
in
{
  # `environment.persistence` comes from impermanence, which the evaluation imports next to nixpkgs' modules
  # from the same pinned sources (nix/eval.nix, nix/tests/paranoid.nix), so a caller's `sources` changes both.

  options.paranix.paranoid = {
    enable = mkEnableOption "a tmpfs root filesystem that keeps only declared state across reboots";

    noexec = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Mount every place written at run time that paranix controls `noexec,nosuid,nodev`: the tmpfs root (and
        with it /tmp, /var/tmp, /root, /home), the persisted directories (/var/lib, /var/log, /srv, /etc/nixos,
        /var/lib/nixos), /nix/persist, the partition at `disk.mountPoint`, the /boot bind mount, and /dev/shm.
        Programs run from /nix/store, setuid wrappers from /run/wrappers (its own mount).

        What stays executable, by nixpkgs' and systemd's choice: /nix/store (read-only to everyone but the Nix
        daemon), /run (nixpkgs mounts it `nosuid,nodev` as systemd does; only root writes there) and the
        per-user /run/user/<uid> tmpfs that systemd-logind mounts for a logged-in user.
      '';
    };

    rootSize = mkOption {
      type = types.str;
      default = "2G";
      example = "512M";
      description = "Size limit of the tmpfs root (memory is only used as files are written).";
    };

    disk = {
      label = mkOption {
        type = types.str;
        default = "nixos";
        description = "Filesystem label of the partition that holds the store and the persisted state. nixpkgs' image builders label it `nixos`.";
      };

      mountPoint = mkOption {
        type = types.str;
        default = "/disk";
        description = "Where the partition is mounted; /nix and /boot are bind mounts of directories on it.";
      };

      bindBoot = mkOption {
        type = types.bool;
        default = !(config.ec2.efi or false);
        defaultText = lib.literalExpression "!(config.ec2.efi or false)";
        description = ''
          Bind-mount the partition's boot/ directory (GRUB for legacy BIOS boot) onto /boot, so GRUB
          configurations written by deploys land on disk. Off for UEFI, where /boot is the EFI system partition.
        '';
      };

      grow = mkOption {
        type = types.bool;
        default = true;
        description = "Grow the partition and its filesystem to the whole disk at boot (an EBS volume larger than the image).";
      };
    };

    noexecScript = mkOption {
      type = types.package;
      internal = true;
      readOnly = true;
      description = "The script paranix-noexec-mounts runs (for tests to read).";
    };

    fileSystems = mkOption {
      type = types.attrsOf (types.attrsOf types.anything);
      internal = true;
      readOnly = true;
      description = "The mounts of the layout above, as `fileSystems` entries. nix/tests/paranoid.nix gives them to its VM.";
    };
  };

  config = lib.mkMerge [
    {
      paranix.paranoid.noexecScript = noexecScript;
      paranix.paranoid.fileSystems =
        {
          "/" = {
            device = "none";
            fsType = "tmpfs";
            options = [
              "defaults"
              "size=${cfg.rootSize}"
              "mode=755"
            ] ++ lib.optionals cfg.noexec [
              "noexec"
              "nosuid"
              "nodev"
            ];
            # impermanence asserts that filesystems it links into are mounted in the initrd.
            neededForBoot = true;
          };
          ${disk.mountPoint} = {
            device = "/dev/disk/by-label/${disk.label}";
            fsType = "ext4";
            autoResize = true;
            neededForBoot = true;
          };
          "/nix" = {
            device = "${disk.mountPoint}/nix";
            fsType = "none";
            options = [ "bind" ];
            depends = [ disk.mountPoint ];
            neededForBoot = true;
          };
        }
        // lib.optionalAttrs disk.bindBoot {
          "/boot" = {
            device = "${disk.mountPoint}/boot";
            fsType = "none";
            options = [ "bind" ];
            depends = [ disk.mountPoint ];
          };
        };
    }

    (lib.mkIf cfg.enable {
      # The amazon-image profile mounts the partition as "/"; the tmpfs replaces that definition entirely.
      fileSystems = cfg.fileSystems // {
        "/" = lib.mkForce cfg.fileSystems."/";
      };

      environment.persistence.${persist} = {
        hideMounts = true;
        directories = persistedDirectories;
        files = [ "/etc/machine-id" ];
      };

      # The seed mounted its persisted directories noexec,nosuid,nodev. impermanence (7b1d382) bind-mounts them
      # through systemd mount units with `bind` and no other option (it has no per-directory mount options), so
      # paranix remounts them once they are up, before local-fs.target and so before any service writes there.
      # /nix/persist itself (the same files under another path) is bound onto itself first, and the partition
      # at /disk (the same files once more) is remounted too; /nix, the bind of its nix/ directory, keeps exec.
      # Every mount at or below each path is remounted (`findmnt -R`): mount propagation copies the bind of
      # /nix/persist to /disk/nix/persist as well. When a deploy reloads one of these mounts (systemd remounts
      # it with its unit's options, dropping these flags), the reload propagates here and the flags come back.
      systemd.services.paranix-noexec-mounts = lib.mkIf cfg.noexec {
        description = "Mount the persisted directories noexec,nosuid,nodev";
        wantedBy = [ "local-fs.target" ];
        before = [ "local-fs.target" ];
        unitConfig = {
          DefaultDependencies = false;
          RequiresMountsFor = noexecMounts;
          ReloadPropagatedFrom = map (path: "${utils.escapeSystemdPath path}.mount") (
            lib.remove persist noexecMounts
          );
        };
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecReload = "${noexecScript} ${lib.escapeShellArgs noexecMounts}";
        };
        script = ''exec ${noexecScript} "$@"'';
        scriptArgs = lib.escapeShellArgs noexecMounts;
      };
      # nixpkgs mounts /dev/shm nosuid,nodev (as systemd's mount-setup does); any user can write there.
      boot.specialFileSystems."/dev/shm".options = lib.mkIf cfg.noexec [ "noexec" ];

      # sshd generates the host key on first boot straight into persistent storage, so the key (and the
      # fingerprint pinned from the EC2 console) survives reboots. No copy or link of it lives in /etc/ssh:
      # apply-ec2-data writes host keys from user data to /etc/ssh and would overwrite a linked public key; the
      # console printer of common/default.nix reads the key from here.
      services.openssh.hostKeys = [
        {
          path = hostKey;
          type = "ed25519";
        }
      ];

      # See "Known limit" at the top of this file.
      boot.loader.grub.extraInstallCommands = lib.mkIf disk.bindBoot ''
        if [ -f /boot/grub/grub.cfg ]; then
          ${pkgs.gnused}/bin/sed -i -E \
            -e 's#(\(\$drive[0-9]+\))/{1,2}store/#\1/nix/store/#g' \
            -e 's#(\(\$drive[0-9]+\))/{1,2}grub/#\1/boot/grub/#g' \
            /boot/grub/grub.cfg
        fi
      '';

      # nixpkgs' growpart service grows the partition behind "/", which is now a tmpfs; grow the partition
      # behind /disk instead.
      boot.growPartition = lib.mkForce false;
      systemd.services.paranix-grow-disk = lib.mkIf disk.grow {
        description = "Grow the ${disk.label} partition and its filesystem to the whole disk";
        wantedBy = [ "multi-user.target" ];
        unitConfig.RequiresMountsFor = disk.mountPoint;
        serviceConfig = {
          Type = "oneshot";
          RemainAfterExit = true;
        };
        path = [
          pkgs.cloud-utils.guest
          pkgs.e2fsprogs
          pkgs.util-linux
        ];
        script = ''
          part="$(readlink -f /dev/disk/by-label/${disk.label})"
          name="$(basename "$part")"
          if [ ! -e "/sys/class/block/$name/partition" ]; then
            echo "$part is a whole disk, not a partition: nothing to grow"
            exit 0
          fi
          parent="/dev/$(basename "$(readlink -f "/sys/class/block/$name/..")")"
          number="$(cat "/sys/class/block/$name/partition")"
          # growpart exits 1 when the partition already fills the disk.
          growpart "$parent" "$number" || [ "$?" -eq 1 ]
          resize2fs "$part"
        '';
      };
    })

    # UEFI: /boot is the EFI system partition (amazon-image's definition, replaced whole: it is a mkDefault
    # attribute set), persistent and writable; GRUB writes kernels there and never executes them from Linux.
    (lib.mkIf (cfg.enable && cfg.noexec && !disk.bindBoot && (config.ec2.efi or false)) {
      fileSystems."/boot" = {
        device = "/dev/disk/by-label/ESP";
        fsType = "vfat";
        options = [
          "noexec"
          "nosuid"
          "nodev"
          "fmask=0077"
          "dmask=0077"
        ];
      };
    })
  ];
}
