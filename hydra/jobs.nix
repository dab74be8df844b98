# The flake's `hydraJobs` (flake.nix): what Hydra builds for every commit of every jobset
# (hydra/jobsets.nix), as jobs named by their attribute path:
#   packages.<system>.<name>   every package of the flake: services, images, SBOMs, tools
#   checks.<system>.<name>     every flake check: clippy, fmt, audit, deny, nextest, deploy-rs
#   hosts.<host>               every host's NixOS system (nixos/fleet.nix)
#   release                    the aggregate that gates production: it succeeds only when each
#                              of its constituents did, and then the release gate deploys it
#                              (hydra/release-gate, run by Hydra's RunCommand on main:release)
# dev/check-hydra.sh evaluates this very function with stand-ins for `self` and `pkgs` and
# checks the release's constituents against the flake's outputs and the inventory.
{
  self,
  # nixpkgs for the platform Hydra builds the aggregate on (releaseTools).
  pkgs,
  # nixos/lib: the inventory decides which hosts production has.
  fleetLib,
  hydraLib ? import ./lib.nix {},
}: let
  inherit (builtins) attrNames concatMap filter mapAttrs;
  inherit (hydraLib) project;

  # Every host of the fleet is x86_64-linux; aarch64 packages are built (developers on ARM use
  # them) but nothing of them ships, so they do not gate a release.
  shipped = "x86_64-linux";
  inherit (fleetLib.inventory) hosts;
  toplevel = host: self.nixosConfigurations.${host}.config.system.build.toplevel;
  releaseHosts = filter (host: hosts.${host}.env == project.releaseEnvironment) (attrNames hosts);

  # Constituents by job name, so the release records what it stands for.
  jobsOf = prefix: set:
    map (name: {
      name = "${prefix}.${name}";
      drv = set.${name};
    }) (attrNames set);
  constituents = concatMap (x: x) [
    (jobsOf "packages.${shipped}" self.packages.${shipped})
    (jobsOf "checks.${shipped}" self.checks.${shipped})
    (map (host: {
        name = "hosts.${host}";
        drv = toplevel host;
      })
      releaseHosts)
  ];

  # Hydra's job output carries no commit, so the release writes one for the gate: the commit,
  # the flake's source in the store (a dependency of this job, hence present on the Hydra host
  # that built it), the forge URL of that commit for a deploy from elsewhere, and the
  # inventory's deploy data the deploy wrapper then needs (it has no checkout to read).
  rev = self.rev or "dirty";
  releaseJson = builtins.toJSON {
    inherit rev;
    source = "${self}";
    flake = hydraLib.flakeUrlOf rev;
    environment = project.releaseEnvironment;
    fleet = fleetLib.deploy;
    constituents = map (c: c.name) constituents;
  };

  release =
    (pkgs.releaseTools.aggregate {
      name = "${project.name}-release";
      constituents = map (c: c.drv) constituents;
      meta.description = "Everything that must build and pass before ${project.releaseEnvironment} moves to this commit";
    })
    .overrideAttrs (old: {
      inherit releaseJson;
      passAsFile = (old.passAsFile or []) ++ ["releaseJson"];
      buildCommand =
        old.buildCommand
        + ''
          cp "$releaseJsonPath" "$out/release.json"
        '';
    });
in {
  inherit (self) packages checks;
  hosts = mapAttrs (host: _: toplevel host) hosts;
  ${project.releaseJob} = release;
}
