# A stand-in for nix/image.nix that needs no nixpkgs: same arguments, same output shape (a raw disk and
# nix-support/image-info.json), built with /bin/sh. The disk's first bytes are the configuration file, so a
# changed configuration is a changed image.
{
  configuration,
  format ? "raw",
  system ? builtins.currentSystem,
}:
builtins.derivation {
  name = "tiny-nixos-image";
  inherit system format;
  conf = builtins.readFile configuration;
  builder = "/bin/sh";
  args = [
    "-c"
    ''
      /usr/bin/mkdir -p $out/nix-support
      /usr/bin/truncate -s 4M $out/disk.raw
      printf '%s' "$conf" | /usr/bin/dd of=$out/disk.raw conv=notrunc status=none
      printf '{"label":"tiny","system":"%s","boot_mode":"legacy-bios","format":"RAW","file":"%s/disk.raw","logical_bytes":"4194304"}' \
        "$system" "$out" > $out/nix-support/image-info.json
    ''
  ];
}
