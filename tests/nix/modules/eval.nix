# Evaluates a paranix host with the real NixOS module system (nixpkgs' `lib.evalModules`) and nothing else of
# nixpkgs: paranix's modules exactly as nix/eval.nix lists them (nix/modules.nix), next to declarations of the
# nixpkgs options they use (options.nix), what nixpkgs' modules do with them (nixpkgs.nix), impermanence's
# declarations (impermanence.nix) and stand-in packages (pkgs.nix).
#
#   import ./eval.nix { lib = import /path/to/nixpkgs/lib; configuration = ../../../examples/printerfacts/host.nix; }
#     -> { config; report; }   report: the values the tests check, as plain data (JSON)
{
  lib,
  configuration,
  options ? { },
  image ? false,
  system ? "x86_64-linux",
  amazon ? true,
  extraModules ? [ ],
}:
let
  pkgs = import ./pkgs.nix { inherit lib system; };
  evaluated = lib.evalModules {
    modules = [
      ./options.nix
      ./impermanence.nix
      (import ./nixpkgs.nix { inherit amazon; })
      {
        _module.args.pkgs = pkgs;
        # nixos/lib/utils.nix, the function paranix uses.
        _module.args.utils.escapeSystemdPath =
          s: builtins.replaceStrings [ "/" "-" " " ] [ "-" "\\x2d" "\\x20" ] (lib.removePrefix "/" s);
      }
    ]
    ++ import ../../../nix/modules.nix { inherit configuration options image; }
    ++ extraModules;
  };
  inherit (evaluated) config;

  sshd = config.services.openssh;
  service = name: config.systemd.services.${name} or null;
  unit =
    name:
    let
      s = service name;
    in
    if s == null || !s.enable then
      null
    else
      {
        inherit (s)
          wantedBy
          before
          after
          wants
          script
          scriptArgs
          ;
        unitConfig = s.unitConfig;
        serviceConfig = s.serviceConfig;
        path = map toString s.path;
      };
in
{
  inherit config;
  report = {
    failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
    inherit (config) warnings;
    hostName = config.networking.hostName;
    sshd = {
      inherit (sshd) enable allowSFTP authorizedKeysInHomedir authorizedKeysFiles;
      settings = lib.filterAttrs (_: v: v != null) sshd.settings;
      hostKeys = map (k: k.path) sshd.hostKeys;
      # The sshd_config lines nixpkgs writes after `settings`.
      extraConfig = lib.filter (l: l != "") (lib.splitString "\n" sshd.extraConfig);
      # /etc/ssh/authorized_keys.d/<user>: the keys sshd admits per user from the configuration.
      authorizedKeys = lib.mapAttrs' (
        name: file: lib.nameValuePair (lib.removePrefix "ssh/authorized_keys.d/" name) file.text
      ) (lib.filterAttrs (name: _: lib.hasPrefix "ssh/authorized_keys.d/" name) config.environment.etc);
    };
    users = lib.mapAttrs (_: u: {
      inherit (u) isNormalUser extraGroups;
      keys = u.openssh.authorizedKeys.keys;
    }) config.users.users;
    inherit (config.users) mutableUsers allowNoPasswordLogin;
    sudoRules = config.security.sudo.extraRules;
    etc = lib.attrNames config.environment.etc;
    nixSettings = config.nix.settings;
    fileSystems = lib.mapAttrs (_: fs: {
      inherit (fs)
        device
        fsType
        options
        neededForBoot
        depends
        autoResize
        ;
    }) config.fileSystems;
    specialFileSystems = lib.mapAttrs (_: fs: fs.options) config.boot.specialFileSystems;
    mounts = config.systemd.mounts;
    persistence = lib.mapAttrs (_: p: {
      directories = map (d: d.directory) p.directories;
      files = map (f: f.file) p.files;
    }) config.environment.persistence;
    # Units that start with the system (enabled services wanted by a target).
    services = lib.sort lib.lessThan (
      lib.attrNames (lib.filterAttrs (_: s: s.enable && s.wantedBy != [ ]) config.systemd.services)
    );
    noexecScript = config.paranix.paranoid.noexecScript.text or null;
    units = {
      noexec = unit "paranix-noexec-mounts";
      printHostKey = unit "paranix-print-host-key";
      growDisk = unit "paranix-grow-disk";
    };
    firewall = {
      inherit (config.networking.firewall) enable allowedTCPPorts trustedInterfaces allowPing;
    };
    grub = {
      inherit (config.boot.loader.grub) configurationLimit device;
    };
    gc = {
      inherit (config.nix.gc) automatic dates options;
    };
    audit = {
      inherit (config.security.audit) enable rules;
    };
    antivirus = {
      daemon = config.services.clamav.daemon.enable;
      updater = config.services.clamav.updater.enable;
      concurrentReload = config.services.clamav.daemon.settings.ConcurrentDatabaseReload or null;
    };
    ssmAgent = config.services.amazon-ssm-agent.enable;
    amazonInit = config.virtualisation.amazon-init.enable;
    printerfacts =
      let
        cfg = config.paranix.services.printerfacts;
      in
      if !cfg.enable then
        null
      else
        {
          inherit (cfg) domain;
          execStart = config.systemd.services.printerfacts.serviceConfig.ExecStart;
          # The package's source, copied into the store by nix/printerfacts.nix's filter.
          source = toString cfg.package.src;
        };
  };
}
