# The Hydra project, as data (docs/delivery.md). Everything else in hydra/ is generated from
# it: the declarative spec (hydra/spec.json, checked against this file by dev/check-hydra.sh),
# the jobsets (hydra/jobsets.nix), and the build-workflow diagram (hydra/diagram.nix).
{
  # The project's name in Hydra; the release gate matches `<name>:main:release`.
  name = "comptoir";
  displayName = "Comptoir";
  description = "Online retail as Rust microservices on Apache Pulsar";

  # The forge (Forgejo on the ci host, nixos/modules/ci.nix) and the repository on it.
  forge = {
    url = "https://forge.comptoir.example";
    owner = "comptoir";
    repo = "comptoir";
  };

  # The nixpkgs branch the `.jobsets` evaluation imports for `writeText`: the same release
  # branch as flake.nix's nixpkgs input (dev/check-hydra.sh compares them).
  nixpkgsBranch = "nixos-25.11";

  # One flake jobset per long-lived branch. `main` gates production (the release gate deploys
  # its `release` job); `staging` builds what is about to be merged. Polling is the floor, the
  # forge's push webhook triggers an evaluation at once (docs/delivery.md).
  branches = {
    main = {
      description = "main: every commit built and tested; its release job deploys production";
      checkinterval = 300;
      schedulingshares = 400;
      # Kept builds are roots in Hydra's store: the last releases stay available to roll back.
      keepnr = 10;
    };
    staging = {
      description = "staging: the branch staging is deployed from";
      checkinterval = 300;
      schedulingshares = 200;
      keepnr = 3;
    };
  };

  # One jobset per open pull request, read from the forge's API through a `path` input that
  # Hydra refetches at most every `refreshSeconds`.
  pulls = {
    limit = 50;
    refreshSeconds = 60;
    # Only pull requests into these branches are built.
    bases = ["main" "staging"];
    checkinterval = 120;
    schedulingshares = 50;
    keepnr = 1;
  };

  # The job whose success on `main` releases to production (hydra/jobs.nix, hydra/release-gate).
  releaseJob = "release";
  releaseEnvironment = "prod";
}
