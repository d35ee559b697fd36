# The host's disk image, ready to become an EBS snapshot and then an AMI.
#
#   nix-build nix/image.nix                        # raw image, for the EBS direct API (the default upload path)
#   nix-build nix/image.nix --argstr format vpc    # VHD, for S3 + ImportSnapshot
#
# The image is the bootstrap system (nix/README.md, "Bootstrap"): it is evaluated from its configuration alone,
# never with PARANIX_VALUES.
#
# Output (a directory, like nixpkgs' amazon image):
#
#   result/nixos.img | nixos.vhd          the disk
#   result/nix-support/image-info.json    what the uploader needs:
#     { "label": "26.05.20260820.5880666", "system": "x86_64-linux", "boot_mode": "legacy-bios" | "uefi",
#       "format": "RAW" | "VHD", "file": "/nix/store/...-image/nixos.img", "logical_bytes": "4294967296",
#       "disks": { "root": { "file": ..., "logical_bytes": ... } } }
#   `logical_bytes` is the disk's virtual size (qemu-img's virtual-size) as a decimal string, as nixpkgs writes
#   it; `format` is spelled as EC2 ImportSnapshot's DiskContainer.Format wants it.
#
# The disk is nixpkgs' make-disk-image with the layout common/paranoid.nix expects: one ext4 partition labelled
# "nixos" holding a complete NixOS install (store at <partition>/nix/store, GRUB at <partition>/boot), behind a
# legacy+gpt table (BIOS boot) or an EFI system partition when the platform boots UEFI (`ec2.efi`, always on
# aarch64). This replaces nixpkgs' amazon image *builder* (maintainers/scripts/ec2/amazon-image.nix) to control
# two things it does not expose the same way: no nixpkgs channel copied into the image (`copyChannel = false`:
# smaller, and the image's hash depends on the host's closure only) and the partition label paranoid.nix mounts.
{
  configuration ? ../examples/printerfacts/host.nix,
  format ? "raw",
  sources ? import ./sources.nix,
  system ? builtins.currentSystem,
}:
let
  # The image is the bootstrap system: root logs in with the EC2 launch key until the first deploy.
  eval = import ./eval.nix {
    inherit configuration sources system;
    image = true;
  };
  inherit (eval) config pkgs;
  inherit (pkgs) lib;

  # make-disk-image format -> how EC2 ImportSnapshot names it. qcow2 is for booting the image locally in QEMU
  # only; EC2 cannot import it.
  formats = {
    raw = "RAW";
    vpc = "VHD";
    qcow2 = "QCOW2";
  };
  ec2Format =
    formats.${format}
      or (throw "nix/image.nix: format '${format}' is not supported; use one of: ${lib.concatStringsSep ", " (lib.attrNames formats)}");

  uefi = config.ec2.efi;
in
import "${sources.nixpkgs}/nixos/lib/make-disk-image.nix" {
  inherit
    lib
    config
    pkgs
    format
    ;
  name = "paranix-image-${if config.networking.hostName == "" then "host" else config.networking.hostName}";
  label = config.paranix.paranoid.disk.label;
  fsType = "ext4";
  partitionTableType = if uefi then "efi" else "legacy+gpt";
  # UEFI: GRUB copies every generation's kernel and initrd onto the ESP (/boot is another filesystem than the
  # store), about 90 MiB per aarch64 generation, so make-disk-image's default 256M ESP fills after two
  # deploys. 1G holds common/default.nix's boot entry limit for UEFI (5) with room to spare.
  bootSize = if uefi then "1G" else "256M";
  # As small as the closure allows plus room for a few deploys; the partition grows to the EBS volume at boot.
  diskSize = "auto";
  additionalSpace = "1024M";
  copyChannel = false;

  postVM = ''
    mkdir -p "$out/nix-support"
    logical_bytes="$(${pkgs.qemu-utils}/bin/qemu-img info --output json "$diskImage" | ${pkgs.jq}/bin/jq '."virtual-size"')"
    ${pkgs.jq}/bin/jq -n \
      --arg label ${lib.escapeShellArg config.system.nixos.label} \
      --arg system ${lib.escapeShellArg pkgs.stdenv.hostPlatform.system} \
      --arg boot_mode ${if uefi then "uefi" else "legacy-bios"} \
      --arg format ${ec2Format} \
      --arg file "$diskImage" \
      --arg logical_bytes "$logical_bytes" \
      '{
        label: $label,
        system: $system,
        boot_mode: $boot_mode,
        format: $format,
        file: $file,
        logical_bytes: $logical_bytes,
        disks: { root: { file: $file, logical_bytes: $logical_bytes } }
      }' > "$out/nix-support/image-info.json"
  '';
}
