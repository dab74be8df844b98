# The platforms the flake builds for (flake.nix; Hydra's job names, hydra/job-names.nix). The
# fleet's hosts are all x86_64-linux; aarch64-linux serves developers on ARM machines.
["x86_64-linux" "aarch64-linux"]
