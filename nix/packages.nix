# Rust builds with crane: one dependency-only derivation shared by every crate, then one
# package per service binary, plus the flake checks that reuse the same artifacts.
{
  pkgs,
  craneLib,
  advisory-db,
  services,
}: let
  inherit (pkgs) lib;
  root = ../.;

  # Cargo is the source of truth for the version (workspace.package.version).
  workspaceToml = builtins.fromTOML (builtins.readFile (root + "/Cargo.toml"));
  inherit (workspaceToml.workspace.package) version;

  # craneLib.cleanCargoSource keeps only *.rs, *.toml and Cargo.lock. That is not enough:
  # refinery::embed_migrations! reads the SQL migrations at compile time, nextest reads its
  # profiles from .config/nextest.toml, and the event-schema test compares the committed
  # docs/events/*.json with the contracts. So: crane's filter plus those three.
  src = lib.cleanSourceWith {
    src = lib.cleanSource root;
    name = "comptoir-source";
    filter = path: type:
      (craneLib.filterCargoSources path type)
      || (lib.hasSuffix ".sql" path)
      || (lib.hasSuffix "/.config/nextest.toml" path)
      || (lib.hasInfix "/docs/events/" path && lib.hasSuffix ".json" path);
  };

  commonArgs = {
    inherit src version;
    pname = "comptoir";
    strictDeps = true;
    # The pulsar crate's build script compiles its protobuf definitions with protoc.
    nativeBuildInputs = [pkgs.protobuf];
    PROTOC = "${pkgs.protobuf}/bin/protoc";
  };

  # Every dependency of the workspace, built once (release profile, all targets so tests and
  # clippy reuse it). Only Cargo.lock changes invalidate it.
  cargoArtifacts = craneLib.buildDepsOnly commonArgs;

  # One package per service: the workspace's release profile (thin LTO, one codegen unit,
  # stripped). Tests run once, in the nextest check, not again in every package.
  mkService = _name: service:
    craneLib.buildPackage (commonArgs
      // {
        inherit cargoArtifacts;
        pname = service.crate;
        cargoExtraArgs = "--locked -p ${service.crate} --bin ${service.binary}";
        doCheck = false;
        meta = {
          description = "Comptoir ${service.crate}";
          license = lib.licenses.asl20;
          mainProgram = service.binary;
        };
      });

  servicePackages = builtins.mapAttrs mkService services;

  # A CycloneDX SBOM per service (cargo-cyclonedx): every crate compiled into the service's
  # binary for the fleet's platform, with its version, licence, source and Cargo.lock checksum.
  # Hydra builds them beside the images (hydra/jobs.nix); dev/check-supply-chain.sh makes the
  # same documents on CI with the same command and checks them. The rest of an image (glibc,
  # CA bundle, tzdata) is a Nix closure: `nix path-info --recursive` of the image lists it.
  mkSbom = name: service:
    craneLib.mkCargoDerivation (commonArgs
      // {
        cargoArtifacts = null;
        pname = "${service.crate}-sbom";
        nativeBuildInputs = commonArgs.nativeBuildInputs ++ [pkgs.cargo-cyclonedx];
        buildPhaseCargoCommand = ''
          cargo cyclonedx --manifest-path services/${name}/Cargo.toml ${sbomArgs}
        '';
        installPhaseCommand = ''
          install -D --mode=0444 services/${name}/${service.crate}.cdx.json "$out/${service.crate}.cdx.json"
        '';
        doInstallCargoArtifacts = false;
      });
  sbomArgs = "--format json --spec-version 1.5 --target x86_64-unknown-linux-gnu";

  sboms = builtins.listToAttrs (map (name: {
    name = "${name}-sbom";
    value = mkSbom name services.${name};
  }) (builtins.attrNames services));

  # The provisioning tool (databases, the Pulsar topology): the fleet's Pulsar role runs it
  # after activation, as dev/ does locally.
  xtask = craneLib.buildPackage (commonArgs
    // {
      inherit cargoArtifacts;
      pname = "comptoir-xtask";
      cargoExtraArgs = "--locked -p comptoir-xtask --bin comptoir-xtask";
      doCheck = false;
      meta = {
        description = "Comptoir's provisioning commands";
        license = lib.licenses.asl20;
        mainProgram = "comptoir-xtask";
      };
    });

  checks = {
    clippy = craneLib.cargoClippy (commonArgs
      // {
        inherit cargoArtifacts;
        cargoClippyExtraArgs = "--workspace --all-targets -- --deny warnings";
      });

    fmt = craneLib.cargoFmt commonArgs;

    toml-fmt = craneLib.taploFmt {
      inherit version;
      pname = "comptoir";
      src = lib.sources.sourceFilesBySuffices src [".toml"];
    };

    # Advisories come from the pinned advisory-db input: the build sandbox has no network.
    audit = craneLib.cargoAudit {
      inherit src advisory-db version;
      pname = "comptoir";
    };

    # Licences, bans and sources (deny.toml). crane leaves out cargo-deny's `advisories`
    # check because it needs the network; the audit check above covers advisories.
    deny = craneLib.cargoDeny {
      inherit src version;
      pname = "comptoir";
    };

    # Every test that needs no running platform: the unit tests and the hermetic integration
    # tests (config, resilience, jwks, server, schemas), chosen by the `hermetic` profile's
    # filter in .config/nextest.toml. The rest need a running PostgreSQL and Apache Pulsar,
    # which the build sandbox cannot offer (no network, no services); dev/test runs them.
    nextest = craneLib.cargoNextest (commonArgs
      // {
        inherit cargoArtifacts;
        cargoNextestExtraArgs = "--workspace --profile hermetic";
        partitions = 1;
        partitionType = "count";
      });
  };
in {
  inherit cargoArtifacts checks commonArgs sbomArgs sboms servicePackages xtask;
}
