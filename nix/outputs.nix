# How flake.nix assembles its `packages` and `checks` for one system from the parts nix/
# builds. Kept apart so that the job names Hydra sees (hydra/jobs.nix) can be computed here
# without nixpkgs: dev/check-hydra.sh calls this function with stand-in parts and reads only
# attribute names.
{
  # One package per service (nix/packages.nix): catalog, identity, ...
  servicePackages,
  # The images, two per service (nix/images.nix): <name>-image and <name>-image-stream.
  images,
  # A CycloneDX SBOM per service (nix/packages.nix): <name>-sbom.
  sboms,
  # The Rust checks (nix/packages.nix): clippy, fmt, toml-fmt, audit, deny, nextest.
  rustChecks,
  # The Pulsar release packaged for the fleet (nix/pulsar.nix), the provisioning tool, and
  # the `default` package (every service in one link farm).
  pulsar,
  xtask,
  default,
  # deploy-rs' checks of the node set, on the platform the fleet runs on (else {}).
  deployChecks,
}: {
  packages = servicePackages // images // sboms // {inherit pulsar xtask default;};

  # `nix flake check`: every service, every image, the Rust checks, and deploy-rs' own checks
  # of the node set (schema, and that every host's system activates).
  checks = servicePackages // images // rustChecks // deployChecks;
}
