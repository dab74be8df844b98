# One NixOS system per host of the inventory (nixos/fleet.nix): the common baseline, the
# modules of the host's roles, and its hardware. flake.nix exposes the result as
# nixosConfigurations.<host>; deploy-rs/ activates them.
{
  nixpkgs,
  # Modules from flake inputs every host imports (sops-nix).
  extraModules,
  # Our packages for a system: { pulsar, xtask, images.<service> }.
  comptoirFor,
}: let
  fleetLib = import ./lib {};
  inherit (fleetLib.inventory) hosts;

  roleModules = {
    k3s-server = ./modules/k3s.nix;
    k3s-agent = ./modules/k3s.nix;
    pulsar = ./modules/pulsar.nix;
    postgres = ./modules/postgres.nix;
    monitoring = ./modules/monitoring.nix;
    ci = ./modules/ci.nix;
  };

  # A host's own file (disks, NICs, boot loader) when it has one, else the generic virtual
  # machine of nixos/hosts/generic.nix.
  hardware = name: let
    own = ./hosts + "/${name}.nix";
  in
    if builtins.pathExists own
    then own
    else ./hosts/generic.nix;

  system = "x86_64-linux";

  mkHost = name: host:
    nixpkgs.lib.nixosSystem {
      inherit system;
      specialArgs = {
        inherit fleetLib host;
        comptoir = comptoirFor system;
      };
      modules =
        extraModules
        ++ [./modules/common.nix (hardware name)]
        ++ nixpkgs.lib.unique (map (role: roleModules.${role}) host.roles);
    };
in
  builtins.mapAttrs mkHost hosts
