# NixOS VM test of the paranoid printerfacts host (examples/printerfacts/host.nix with common/).
#
#   nix-build nix/tests/paranoid.nix          # needs KVM; see nix/README.md
#
# What it checks, in one VM booted twice:
#   - / is a tmpfs (noexec), the store comes from the persistent partition through the /disk + /nix bind layout,
#     and the partition was grown to the disk;
#   - sshd: public keys only, no agent / X11 / stream-local forwarding, no root login (no root key), no SFTP;
#   - the persisted directories, /nix/persist, /disk, /boot and /dev/shm are noexec,nosuid,nodev;
#   - the host key is printed on the console in cloud-init's format;
#   - sudo: the wrapper belongs to wheel and is not executable by anyone else;
#   - auditd runs and the kernel records execve;
#   - printerfacts answers through nginx, as a DynamicUser service;
#   - after a full power cycle, the SSH host key and machine id are the same and stray files on / are gone.
#
# Not covered here (see nix/README.md): the EC2-specific parts of the image (amazon-image profile, metadata
# service, console host-key printout), and GRUB re-installs from a deploy on the host.
{
  sources ? import ../sources.nix,
  system ? builtins.currentSystem,
  pkgs ? import sources.nixpkgs {
    inherit system;
    config = { };
    overlays = [ ];
  },
}:
let
  # A well-formed public key whose private half was thrown away: the account must have a key, nobody logs in.
  aliceKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMjMZEVrNjSKUUZXtB4AoN6oSSCMxnpts45zOEqlI5qT alice@paranix-vm-test";
in
pkgs.testers.runNixOSTest {
  name = "paranix-paranoid";

  nodes.machine =
    { config, lib, ... }:
    {
      # impermanence from the same pinned sources as nixpkgs (nix/eval.nix does the same).
      imports = [
        "${sources.impermanence}/nixos.nix"
        ../../examples/printerfacts/host.nix
      ];

      virtualisation = {
        # Boot from a disk made by nixpkgs' make-disk-image (one partition labelled "nixos" holding the whole
        # system, GRUB installed) instead of the default direct kernel boot with the host's store shared over
        # 9p. That is the kind of disk nix/image.nix builds, so the VM mounts it the way an EC2 instance does.
        useBootLoader = true;
        # qemu-vm replaces `fileSystems` with `virtualisation.fileSystems`: give it paranoid.nix's layout
        # (its "/" replaces qemu-vm's default root on the disk).
        fileSystems = config.paranix.paranoid.fileSystems // {
          "/" = lib.mkForce config.paranix.paranoid.fileSystems."/";
        };
        # Larger than the image, so paranix-grow-disk has a partition to grow.
        diskSize = 8192;
        memorySize = 2048;
      };

      # freshclam needs the internet and clamd over 1 GiB of signatures in memory; neither fits a sandboxed VM.
      paranix.antivirus.enable = false;

      paranix.users.alice = {
        groups = [ "wheel" ];
        keys = [ aliceKey ];
      };
      # Not in wheel: must not be able to even start sudo.
      users.users.visitor.isNormalUser = true;
    };

  testScript =
    { nodes, ... }:
    let
      domain = nodes.machine.paranix.services.printerfacts.domain;
      sshd = "${nodes.machine.services.openssh.package}/bin/sshd";
      curl = "${pkgs.curl}/bin/curl --fail --silent --show-error -H 'Host: ${domain}'";
      auditctl = "${pkgs.audit}/bin/auditctl";
      openssh = "${pkgs.openssh}/bin";
    in
    ''
      machine.start()
      machine.wait_for_unit("multi-user.target")

      with subtest("the root filesystem is a noexec tmpfs"):
          machine.succeed('test "$(findmnt -n -o FSTYPE /)" = tmpfs')
          machine.succeed("findmnt -n -o OPTIONS / | tr , '\\n' | grep -x noexec")
          machine.succeed("cp \"$(readlink -f \"$(type -P true)\")\" /root/copied-program")
          machine.succeed("/root/copied-program 2>&1 | grep -q 'Permission denied'")

      with subtest("persisted state is noexec,nosuid,nodev wherever it can be reached, and so is /dev/shm"):
          machine.succeed("systemctl is-active paranix-noexec-mounts.service")
          for path in ["/var/lib", "/var/log", "/srv", "/etc/nixos", "/var/lib/nixos", "/nix/persist", "/disk", "/boot", "/dev/shm"]:
              for flag in ["noexec", "nosuid", "nodev"]:
                  machine.succeed(f"findmnt -n -o OPTIONS --target {path} | tr , '\\n' | grep -x {flag}")
          machine.succeed("cp \"$(readlink -f \"$(type -P true)\")\" /var/lib/copied-program")
          machine.succeed("/var/lib/copied-program 2>&1 | grep -q 'Permission denied'")
          machine.succeed("/nix/persist/var/lib/copied-program 2>&1 | grep -q 'Permission denied'")
          machine.succeed("rm /var/lib/copied-program")
          # The store stays executable.
          machine.fail("findmnt -n -o OPTIONS --target /nix/store | tr , '\\n' | grep -x noexec")

      with subtest("the host key is printed on the console in cloud-init's format"):
          machine.wait_for_console_text("-----END SSH HOST KEY KEYS-----")

      with subtest("the store and persisted state come from the partition through /disk"):
          machine.succeed('test "$(findmnt -n -o FSTYPE /disk)" = ext4')
          machine.succeed("findmnt -n -o SOURCE /nix | grep -F '[/nix]'")
          machine.succeed("findmnt -n -o SOURCE /boot | grep -F '[/boot]'")
          machine.succeed("test -d /disk/nix/store -a -d /nix/persist/var/lib -a -d /nix/persist/var/log")
          machine.succeed("test -f /boot/grub/grub.cfg")
          machine.succeed("systemctl is-active paranix-grow-disk.service")
          # The disk is 8 GiB, the image a fraction of that.
          machine.succeed("test $(findmnt -n -b -o SIZE /disk) -gt 6000000000")

      with subtest("sshd takes public keys only and forwards nothing"):
          settings = machine.succeed("${sshd} -T -f /etc/ssh/sshd_config").splitlines()
          for expected in [
              "passwordauthentication no",
              "kbdinteractiveauthentication no",
              "authenticationmethods publickey",
              "permitrootlogin no",
              "allowagentforwarding no",
              "allowstreamlocalforwarding no",
              "x11forwarding no",
          ]:
              assert expected in settings, f"sshd -T lacks {expected!r}"
          assert not any(line.startswith("subsystem sftp") for line in settings), "SFTP is enabled"

      with subtest("only wheel can run sudo"):
          machine.succeed('test "$(stat -c %G /run/wrappers/bin/sudo)" = wheel')
          machine.succeed("su alice -c '/run/wrappers/bin/sudo -n true'")
          machine.succeed("su visitor -c '/run/wrappers/bin/sudo -n true' 2>&1 | grep -q 'Permission denied'")

      with subtest("auditd runs and execve is audited"):
          machine.wait_for_unit("auditd.service")
          machine.succeed("${auditctl} -s | grep -E '^enabled [12]'")
          machine.succeed("${auditctl} -l | grep -F -- '-S execve'")

      with subtest("printerfacts answers through nginx"):
          machine.wait_for_unit("printerfacts.service")
          machine.wait_for_unit("nginx.service")
          machine.wait_until_succeeds("${curl} http://127.0.0.1/health | grep -x ok")
          fact = machine.succeed("${curl} http://127.0.0.1/fact").strip()
          assert fact, "/fact answered with an empty body"
          machine.succeed('test "$(systemctl show -p DynamicUser --value printerfacts.service)" = yes')

      with subtest("the SSH host key and machine id survive a power cycle; stray files on / do not"):
          machine.succeed("test -s /nix/persist/etc/ssh/ssh_host_ed25519_key")
          key_before = machine.succeed("${openssh}/ssh-keygen -l -f /nix/persist/etc/ssh/ssh_host_ed25519_key.pub")
          id_before = machine.succeed("cat /etc/machine-id")
          machine.succeed("touch /root/stray /etc/stray")

          machine.shutdown()
          machine.start()
          machine.wait_for_unit("multi-user.target")

          key_after = machine.succeed("${openssh}/ssh-keygen -l -f /nix/persist/etc/ssh/ssh_host_ed25519_key.pub")
          assert key_before == key_after, f"host key changed: {key_before!r} -> {key_after!r}"
          assert id_before == machine.succeed("cat /etc/machine-id"), "machine id changed"
          machine.fail("test -e /root/stray -o -e /etc/stray")
          # sshd serves the persisted key, not a freshly generated one.
          machine.wait_for_unit("sshd.service")
          machine.succeed(
              "${openssh}/ssh-keyscan -t ed25519 127.0.0.1 2>/dev/null"
              " | grep -F \"$(cut -d' ' -f2 /nix/persist/etc/ssh/ssh_host_ed25519_key.pub)\""
          )
          machine.wait_until_succeeds("${curl} http://127.0.0.1/health | grep -x ok")
    '';
}
