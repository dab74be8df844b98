"""The fleet lab (dev/lab, docs/lab.md): the `lab` environment of nixos/fleet.nix brought up on
one machine, one network namespace per host, running the real software with the settings the
NixOS modules declare (evaluated from nixos/lib with nix-instantiate)."""
