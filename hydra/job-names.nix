# Hydra's jobs by name, computed here without nixpkgs: hydra/jobs.nix (the flake's hydraJobs)
# evaluated with a stand-in `self` whose packages and checks are assembled by nix/outputs.nix
# from the real nix/packages.nix and nix/images.nix (only their attribute names are read: no
# derivation is ever forced), the real inventory, and a stand-in releaseTools.aggregate that
# returns what it was given. dev/check-hydra.sh checks the result and hydra/diagram.nix draws
# it:
#   nix-instantiate --eval --strict --json -E '(import ./hydra/job-names.nix {}).release'
{
  services ? import ../nix/services.nix,
  systems ? import ../nix/systems.nix,
  fleetLib ? import ../nixos/lib {},
  hydraLib ? import ./lib.nix {},
  # The commit the stand-in `self` was "built" from.
  rev ? "0123456789abcdef0123456789abcdef01234567",
}: let
  inherit (builtins) attrNames foldl' listToAttrs mapAttrs;

  # A derivation's stand-in: a name and an output path, never built.
  fake = name: {
    type = "derivation";
    inherit name;
    outPath = "/nix/store/00000000000000000000000000000000-${name}";
  };
  fakeEach = mapAttrs (name: _: fake name);

  # The one nixpkgs function nix/images.nix needs to produce its attribute names.
  lib.foldlAttrs = f: init: set: foldl' (acc: name: f acc name set.${name}) init (attrNames set);
  rust = import ../nix/packages.nix {
    pkgs = {inherit lib;};
    craneLib = {};
    advisory-db = null;
    inherit services;
  };
  images = import ../nix/images.nix {
    pkgs = {inherit lib;};
    inherit services;
    inherit (rust) servicePackages;
    revision = rev;
    created = "1970-01-01T00:00:01Z";
    sourceUrl = hydraLib.repoUrl;
  };

  perSystem = system:
    mapAttrs (_: fakeEach) (import ../nix/outputs.nix {
      inherit (rust) servicePackages sboms;
      inherit images;
      rustChecks = rust.checks;
      pulsar = null;
      xtask = null;
      default = null;
      # deploy-rs' `deployChecks` gives these two checks (schema, activation of every node),
      # on the fleet's platform only, as flake.nix asks.
      deployChecks =
        if system == "x86_64-linux"
        then {
          deploy-schema = null;
          deploy-activate = null;
        }
        else {};
    });
  bySystem = listToAttrs (map (system: {
      name = system;
      value = perSystem system;
    })
    systems);

  self = {
    inherit rev;
    outPath = "/nix/store/00000000000000000000000000000000-source";
    packages = mapAttrs (_: s: s.packages) bySystem;
    checks = mapAttrs (_: s: s.checks) bySystem;
    nixosConfigurations =
      mapAttrs (host: _: {config.system.build.toplevel = fake "nixos-system-${host}";})
      fleetLib.inventory.hosts;
  };

  # releaseTools.aggregate and the override hydra/jobs.nix applies to it, recorded.
  pkgs.releaseTools.aggregate = args: {
    overrideAttrs = f: let
      added = f {
        buildCommand = "";
        passAsFile = [];
      };
    in {
      inherit (args) name meta;
      constituents = map (drv: drv.name) args.constituents;
      passAsFile = added.passAsFile;
      releaseJson = builtins.fromJSON added.releaseJson;
    };
  };

  jobs = import ./jobs.nix {inherit self pkgs fleetLib hydraLib;};
in {
  services = attrNames services;
  packages = mapAttrs (_: attrNames) jobs.packages;
  checks = mapAttrs (_: attrNames) jobs.checks;
  hosts = attrNames jobs.hosts;
  release = jobs.${hydraLib.project.releaseJob};
  releaseJob = hydraLib.project.releaseJob;
  releaseEnvironment = hydraLib.project.releaseEnvironment;
  inherit rev;
  source = self.outPath;
  # The inventory's view, for the checker to compare with.
  hostsByEnv = mapAttrs (_: host: host.env) fleetLib.inventory.hosts;
}
