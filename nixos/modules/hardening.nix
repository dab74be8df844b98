# The systemd sandbox every long-running daemon of ours starts from (the Pulsar units, Jaeger):
# no privilege, a read-only system, only its own state writable, the inet and unix sockets.
# A unit adds what it needs on top (`import ./hardening.nix // {...}`). Not a NixOS module:
# a plain attribute set of serviceConfig keys.
{
  NoNewPrivileges = true;
  ProtectSystem = "strict";
  ProtectHome = true;
  PrivateTmp = true;
  PrivateDevices = true;
  ProtectKernelTunables = true;
  ProtectKernelModules = true;
  ProtectKernelLogs = true;
  ProtectControlGroups = true;
  ProtectClock = true;
  ProtectHostname = true;
  ProtectProc = "invisible";
  RestrictNamespaces = true;
  RestrictRealtime = true;
  RestrictSUIDSGID = true;
  LockPersonality = true;
  RestrictAddressFamilies = ["AF_INET" "AF_INET6" "AF_UNIX"];
  CapabilityBoundingSet = "";
  AmbientCapabilities = "";
  SystemCallArchitectures = "native";
  UMask = "0077";
}
