# The ci role (Forgejo, Hydra, the binary cache: docs/architecture.md §10). A slot only: the
# delivery work writes this module. Until then a ci host is the baseline of common.nix and
# nothing more, and nixos/lib/firewall.nix opens nothing for the role beyond SSH and the node
# exporter.
_: {}
