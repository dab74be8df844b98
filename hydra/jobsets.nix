# The expression of the `.jobsets` jobset (hydra/spec.json): Hydra evaluates it with the spec's
# inputs, builds its one job, `jobsets`, and reads the JSON file it produces as the project's
# jobsets: `main`, `staging`, and `pr-<n>` for each open pull request of the forge. The jobsets
# themselves are computed in pure Nix by hydra/lib.nix (checked in CI with sample pull lists);
# nixpkgs only writes the file.
{
  # A nixpkgs checkout (the spec's `nixpkgs` input: the same release branch as the flake).
  nixpkgs,
  # The forge's list of open pull requests as a file (the spec's `pulls` path input).
  pulls,
  # Hydra also passes declInput and projectName; they are not needed.
  ...
}: let
  pkgs = import nixpkgs {system = "x86_64-linux";};
  jobsets = (import ./lib.nix {}).jobsets (builtins.readFile pulls);
in {
  jobsets = pkgs.writeText "comptoir-jobsets.json" (builtins.toJSON jobsets);
}
