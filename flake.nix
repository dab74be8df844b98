{
  description = "Comptoir: online retail as Rust microservices on Apache Pulsar, shipped as Nix-built OCI images";

  inputs = {
    # A NixOS release branch: security fixes without surprise upgrades; flake.lock pins it.
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
    flake-utils.url = "github:numtide/flake-utils";
    crane.url = "github:ipetkov/crane";
    # The same Rust as rustup gives developers and CI (1.95), not the release's older rustc:
    # clippy's lints change between versions and `-D warnings` must mean the same everywhere.
    rust-overlay = {
      url = "github:oxalica/rust-overlay";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    deploy-rs = {
      url = "github:serokell/deploy-rs";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    advisory-db = {
      url = "github:rustsec/advisory-db";
      flake = false;
    };
    # Secrets of the fleet: encrypted in the repository, decrypted on each host with its own
    # key (docs/adr/0018-secrets-with-sops-nix.md).
    sops-nix = {
      url = "github:Mic92/sops-nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs = {
    self,
    nixpkgs,
    flake-utils,
    crane,
    rust-overlay,
    deploy-rs,
    advisory-db,
    sops-nix,
  }: let
    # Pure data: the services to package and ship (checked against Cargo by CI).
    services = import ./nix/services.nix;
    rustVersion = "1.95.0";
    sourceUrl = "https://example.invalid/comptoir";

    # The fleet: pure data and generators (nixos/fleet.nix, nixos/lib), docs/fleet.md.
    fleetLib = import ./nixos/lib {};

    # What the NixOS roles need of this flake, for the hosts' system.
    comptoirFor = system: let
      pkgs = nixpkgs.legacyPackages.${system};
    in {
      inherit (self.packages.${system}) pulsar xtask;
      # The trace backend of the monitoring hosts (nix/jaeger.nix); the hosts' closure builds it.
      jaeger = pkgs.callPackage ./nix/jaeger.nix {};
      images = builtins.mapAttrs (name: _: self.packages.${system}."${name}-image") services;
      # `deploy prod` for the ci host's release gate (nixos/modules/ci.nix): the dev shell's
      # wrapper (perSystem's `deploy`), plus what a systemd unit's PATH lacks and the dev shell
      # takes from the operator's machine: ssh for deploy-rs and nix copy, git for the flake.
      deploy = pkgs.writeShellApplication {
        name = "deploy";
        runtimeInputs = [pkgs.jq pkgs.curl pkgs.nix pkgs.openssh pkgs.git];
        text = ''
          export COMPTOIR_DEPLOY_RS_BIN="''${COMPTOIR_DEPLOY_RS_BIN:-${deploy-rs.packages.${system}.default}/bin/deploy}"
          exec ${pkgs.bash}/bin/bash ${./deploy-rs/deploy} "$@"
        '';
      };
    };

    perSystem = flake-utils.lib.eachSystem (import ./nix/systems.nix) (system: let
      pkgs = import nixpkgs {
        inherit system;
        overlays = [(import rust-overlay)];
      };

      mkToolchain = p:
        p.rust-bin.stable.${rustVersion}.default.override {
          extensions = ["clippy" "rustfmt" "rust-src"];
        };
      craneLib = (crane.mkLib pkgs).overrideToolchain mkToolchain;

      rust = import ./nix/packages.nix {
        inherit pkgs craneLib advisory-db services;
      };

      # Image metadata from the commit, so the same commit always gives the same image.
      revision = self.rev or "dirty";
      created = let
        d = self.lastModifiedDate or "19700101000001";
        s = builtins.substring;
      in "${s 0 4 d}-${s 4 2 d}-${s 6 2 d}T${s 8 2 d}:${s 10 2 d}:${s 12 2 d}Z";

      images = import ./nix/images.nix {
        inherit pkgs services revision created sourceUrl;
        inherit (rust) servicePackages;
      };

      pulsar = pkgs.callPackage ./nix/pulsar.nix {};
      # `deploy`: deploy-rs itself for one host (`deploy .#prod-k3s-1`), and for a whole
      # environment (`deploy prod`, `deploy .#prod`) our wrapper: the canary first, then a
      # health gate, then the rest (deploy-rs/README.md). It finds the real binary through
      # COMPTOIR_DEPLOY_RS_BIN.
      deployRs = deploy-rs.packages.${system}.default;
      deploy = pkgs.writeShellApplication {
        name = "deploy";
        runtimeInputs = [pkgs.jq pkgs.curl pkgs.nix];
        text = ''
          export COMPTOIR_DEPLOY_RS_BIN="''${COMPTOIR_DEPLOY_RS_BIN:-${deployRs}/bin/deploy}"
          exec ${pkgs.bash}/bin/bash ${./deploy-rs/deploy} "$@"
        '';
      };

      # Every tool the project uses, for the dev shell and for the two README commands.
      tools = [
        pkgs.cargo-nextest
        pkgs.cargo-deny
        pkgs.cargo-audit
        pkgs.cargo-cyclonedx # dev/check-supply-chain.sh, the SBOMs
        pkgs.postgresql_17
        pkgs.openssl # dev/postgres.sh makes the local TLS certificates
        pkgs.jdk17_headless
        pkgs.maven # dev/ resolves the local Pulsar standalone from Maven Central
        pulsar
        pkgs.prometheus # the server
        pkgs.prometheus.cli # promtool: nixpkgs ships it in the `cli` output, not in `out`
        # dev/monitoring.sh (dev/up's monitoring) and dev/bootstrap.sh's Mailpit; Jaeger, which
        # nixpkgs does not package, is built by dev/bootstrap.sh.
        pkgs.prometheus-alertmanager
        pkgs.prometheus-node-exporter
        pkgs.prometheus-postgres-exporter
        pkgs.mailpit
        pkgs.go
        pkgs.protobuf
        deploy
        pkgs.bazel-buildtools # buildifier
        pkgs.alejandra
        pkgs.deadnix
        pkgs.taplo
        pkgs.wrk
        pkgs.curl
        pkgs.git
        pkgs.iproute2 # ss, used by dev/ to find busy ports
        pkgs.python3
        pkgs.skopeo # pushes the streamed images
      ];

      # dev/ scripts were written for Debian; these tell them the tools come from Nix.
      toolEnv = {
        COMPTOIR_TOOLS_FROM_NIX = "1";
        COMPTOIR_PG_BIN = "${pkgs.postgresql_17}/bin";
        JAVA_HOME = "${pkgs.jdk17_headless}";
        PROTOC = "${pkgs.protobuf}/bin/protoc";
      };

      # `nix run .#up` / `.#test`: the README's commands, run on the working tree (they build
      # with cargo and keep state under ~/.cache/comptoir, which a store copy cannot).
      devCommand = name:
        flake-utils.lib.mkApp {
          drv = pkgs.writeShellApplication {
            name = "comptoir-${name}";
            runtimeInputs = tools ++ [(mkToolchain pkgs)];
            runtimeEnv = toolEnv;
            text = ''
              root="$(git rev-parse --show-toplevel 2>/dev/null || pwd)"
              if [[ ! -x "$root/dev/${name}" ]]; then
                echo "comptoir-${name}: run this from a Comptoir checkout (no $root/dev/${name})" >&2
                exit 1
              fi
              exec "$root/dev/${name}" "$@"
            '';
          };
        };
      # packages and checks, assembled as nix/outputs.nix says (Hydra's job names come from it).
      assembled = import ./nix/outputs.nix {
        inherit (rust) servicePackages sboms;
        inherit images;
        rustChecks = rust.checks;
        inherit pulsar;
        inherit (rust) xtask;
        default = pkgs.linkFarmFromDrvs "comptoir-services" (builtins.attrValues rust.servicePackages);
        # The fleet's hosts are x86_64-linux, so deploy-rs' checks (which build every host's
        # activation) are too.
        deployChecks =
          if system == "x86_64-linux"
          then deploy-rs.lib.${system}.deployChecks self.deploy
          else {};
      };
    in {
      inherit (assembled) packages checks;

      devShells.default = craneLib.devShell ({
          # The Rust checks' inputs (protoc, ...) come along.
          checks = rust.checks;
          packages = tools;
        }
        // toolEnv);

      apps = {
        up = devCommand "up";
        test = devCommand "test";
      };

      formatter = pkgs.alejandra;
    });
  in
    perSystem
    // {
      # One NixOS system per host of nixos/fleet.nix.
      nixosConfigurations = import ./nixos {
        inherit nixpkgs comptoirFor;
        extraModules = [sops-nix.nixosModules.sops];
      };

      # deploy-rs nodes, one per host (`deploy .#prod-k3s-1`; `deploy prod` rolls a whole
      # environment canary first through the dev shell's wrapper, deploy-rs/README.md).
      deploy = import ./deploy-rs {inherit self deploy-rs fleetLib;};

      # What Hydra builds for every commit, and the `release` aggregate that gates production
      # (hydra/jobs.nix; the project and its jobsets: hydra/, docs/delivery.md).
      hydraJobs = import ./hydra/jobs.nix {
        inherit self fleetLib;
        pkgs = nixpkgs.legacyPackages.x86_64-linux;
      };
    };
}
