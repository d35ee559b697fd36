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
  ...
}:
let
  cfg = config.paranix.paranoid;
  inherit (lib) mkOption mkEnableOption types;

  sources = import ../nix/sources.nix;

  # Where persisted state lives: on the partition, inside the /nix bind mount.
  persist = "/nix/persist";

  hostKey = "${persist}/etc/ssh/ssh_host_ed25519_key";

  disk = cfg.disk;
in
{
  imports = [ "${sources.impermanence}/nixos.nix" ];

  options.paranix.paranoid = {
    enable = mkEnableOption "a tmpfs root filesystem that keeps only declared state across reboots";

    noexec = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Mount the tmpfs root `noexec,nosuid,nodev`: nothing written at run time outside the persisted
        directories can be executed (programs run from /nix/store, setuid wrappers from /run/wrappers).
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

    fileSystems = mkOption {
      type = types.attrsOf (types.attrsOf types.anything);
      internal = true;
      readOnly = true;
      description = "The mounts of the layout above, as `fileSystems` entries. nix/tests/paranoid.nix gives them to its VM.";
    };
  };

  config = lib.mkMerge [
    {
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
        directories = [
          "/etc/nixos"
          "/srv"
          "/var/lib"
          "/var/log"
          # Inside /var/lib already. Listed on its own because it holds the uid/gid allocations, which must never
          # be lost: it stays persisted if /var/lib is ever narrowed to a few service directories.
          "/var/lib/nixos"
        ];
        files = [ "/etc/machine-id" ];
      };

      # sshd generates the host key on first boot straight into persistent storage, so the key (and the
      # fingerprint pinned from the EC2 console) survives reboots. The public half is also linked at its usual
      # place, where tools such as the EC2 console printer look for host keys.
      services.openssh.hostKeys = [
        {
          path = hostKey;
          type = "ed25519";
        }
      ];
      environment.etc."ssh/ssh_host_ed25519_key.pub".source = "${hostKey}.pub";

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
  ];
}
