# printerfacts (the Rust crate in ./printerfacts) behind nginx.
#
# The service listens on 127.0.0.1 only and runs as a throw-away user with no capabilities, no writable
# filesystem beyond its empty state directory, and network access to loopback only. nginx is the public face:
# plain HTTP on port 80, or with `acme.enable` a Let's Encrypt certificate and a redirect to HTTPS.
{
  config,
  lib,
  pkgs,
  ...
}:
let
  cfg = config.paranix.services.printerfacts;
  inherit (lib) mkOption mkEnableOption types;
in
{
  options.paranix.services.printerfacts = {
    enable = mkEnableOption "printerfacts, a small HTTP service of printer facts, behind nginx";

    domain = mkOption {
      type = types.str;
      example = "printerfacts.example.com";
      description = "Host name of the nginx virtual host, and the name on its certificate when ACME is enabled.";
    };

    port = mkOption {
      type = types.port;
      default = 5000;
      description = "Loopback port printerfacts listens on. Only nginx connects to it; the firewall keeps it closed.";
    };

    package = mkOption {
      type = types.package;
      default = pkgs.callPackage ../../nix/printerfacts.nix { };
      defaultText = lib.literalExpression "pkgs.callPackage ../../nix/printerfacts.nix { }";
      description = "The printerfacts package (built from this repository's Cargo workspace).";
    };

    acme = {
      enable = mkEnableOption ''
        a Let's Encrypt certificate for `domain` and a redirect from HTTP to HTTPS. The HTTP-01 challenge
        needs port 80 of `domain` reachable from the internet
      '';

      email = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "ops@example.com";
        description = "Contact address of the ACME account (expiry warnings). Required with `acme.enable`.";
      };
    };
  };

  config = lib.mkIf cfg.enable {
    assertions = [
      {
        assertion = cfg.acme.enable -> cfg.acme.email != null;
        message = "paranix.services.printerfacts.acme.email must be set when paranix.services.printerfacts.acme.enable is true.";
      }
    ];

    systemd.services.printerfacts = {
      description = "printerfacts HTTP service";
      wantedBy = [ "multi-user.target" ];
      after = [ "network.target" ];
      environment = {
        PORT = toString cfg.port;
        BIND = "127.0.0.1";
      };
      serviceConfig = {
        ExecStart = lib.getExe cfg.package;
        Restart = "on-failure";
        RestartSec = "2s";

        # Identity: a user allocated at start and gone at stop, with nothing it can escalate to.
        DynamicUser = true;
        NoNewPrivileges = true;
        CapabilityBoundingSet = "";
        AmbientCapabilities = "";
        RestrictSUIDSGID = true;

        # Filesystem: read-only everywhere except an empty private state directory (the service keeps no
        # state; the directory gives systemd a home for the dynamic user).
        StateDirectory = "printerfacts";
        StateDirectoryMode = "0700";
        UMask = "0077";
        ProtectSystem = "strict";
        ProtectHome = true;
        PrivateTmp = true;
        PrivateDevices = true;
        DevicePolicy = "closed";
        ProtectProc = "invisible";
        ProcSubset = "pid";

        # Kernel and the rest of the system: hands off.
        ProtectKernelTunables = true;
        ProtectKernelModules = true;
        ProtectKernelLogs = true;
        ProtectControlGroups = true;
        ProtectClock = true;
        ProtectHostname = true;
        RestrictNamespaces = true;
        RestrictRealtime = true;
        LockPersonality = true;
        MemoryDenyWriteExecute = true;
        RemoveIPC = true;
        PrivateUsers = true;

        # Network: TCP over IPv4/IPv6, to and from loopback only (nginx).
        RestrictAddressFamilies = [
          "AF_INET"
          "AF_INET6"
        ];
        IPAddressAllow = "localhost";
        IPAddressDeny = "any";

        # System calls: what an ordinary service needs, minus privileged and resource-tuning calls.
        SystemCallArchitectures = "native";
        SystemCallFilter = [
          "@system-service"
          "~@privileged"
          "~@resources"
        ];
        SystemCallErrorNumber = "EPERM";

        # The server caps itself at 64 connection threads (MAX_CONNECTIONS in the crate); this is a backstop.
        TasksMax = 96;
        MemoryMax = "128M";
      };
    };

    services.nginx = {
      enable = true;
      recommendedProxySettings = true;
      recommendedTlsSettings = true;
      recommendedOptimisation = true;
      virtualHosts.${cfg.domain} = {
        enableACME = cfg.acme.enable;
        forceSSL = cfg.acme.enable;
        locations."/".proxyPass = "http://127.0.0.1:${toString cfg.port}";
      };
    };

    security.acme = lib.mkIf cfg.acme.enable {
      acceptTerms = true;
      defaults.email = cfg.acme.email;
    };

    networking.firewall.allowedTCPPorts = [ 80 ] ++ lib.optional cfg.acme.enable 443;
  };
}
