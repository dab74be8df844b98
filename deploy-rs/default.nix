# The flake's `deploy` output, which deploy-rs reads: the node set generated from the inventory
# (nixos/lib/deploy.nix: addresses, SSH user, timeouts, rollback settings, groups) with, for
# each node, the one thing that needs nixpkgs: the store path of its NixOS system, wrapped by
# deploy-rs's activation script. In flake.nix:
#   deploy = import ./deploy-rs { inherit self deploy-rs; fleetLib = import ./nixos/lib {}; };
# dev/fleet/check-deploy.sh evaluates this very function with stand-ins for `self` and
# `deploy-rs` and reads the result with deploy-rs's own types (deploy-rs/check).
{
  self,
  deploy-rs,
  fleetLib,
}: {
  nodes = builtins.mapAttrs (name: node: let
    system = self.nixosConfigurations.${name};
    # The activation script must be built for the host's platform, which its configuration
    # knows (nixpkgs.hostPlatform, nixos/hosts/); nothing here assumes x86_64.
    platform = system.pkgs.stdenv.hostPlatform.system;
  in
    node
    // {
      profiles =
        node.profiles
        // {
          system =
            node.profiles.system
            // {
              path = deploy-rs.lib.${platform}.activate.nixos system;
            };
        };
    })
  fleetLib.deploy.nodes;
}
