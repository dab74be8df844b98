# Comptoir's Hydra project generated from hydra/project.nix, in pure Nix (builtins only), so
# CI evaluates every part of it without nixpkgs (dev/check-hydra.sh), e.g.:
#   nix-instantiate --eval --strict --json -E '(import ./hydra/lib.nix {}).spec'
#   nix-instantiate --eval --strict --json -E \
#     '(import ./hydra/lib.nix {}).jobsets (builtins.readFile ./hydra/tests/pulls/open.json)'
#
# Hydra accepts these keys in a jobset spec (Hydra::Helper::AddBuilds, validateDeclarativeJobset):
# enabled, hidden, type, flake, description, nixexprinput, nixexprpath, checkinterval,
# schedulingshares, enableemail, enable_dynamic_run_command, emailoverride, keepnr, and inputs.
# Anything else fails the whole update, so every jobset here spells out what it sets.
{project ? import ./project.nix}: let
  inherit (builtins) attrNames elem filter fromJSON isAttrs isInt isList listToAttrs mapAttrs match toString;
  inherit (project) forge;

  repoUrl = "${forge.url}/${forge.owner}/${forge.repo}.git";

  # What every jobset shares, Hydra's defaults written out so the spec reads on its own.
  common = {
    enabled = 1;
    hidden = false;
    enableemail = false;
    emailoverride = "";
    # `enable_dynamic_run_command` is left out on purpose: Hydra enables it when the key is
    # present at all, even as false, and refuses the jobset unless the server allows dynamic
    # RunCommand. Absent, it stays off, which it must: such a jobset runs the `runCommandHook`
    # jobs of whatever it builds on the Hydra host, and a pull request must not run code there.
    # Flake jobsets take no inputs; Hydra still wants the (empty) object.
    inputs = {};
  };

  flakeJobset = {
    flake,
    description,
    checkinterval,
    schedulingshares,
    keepnr,
  }:
    common
    // {
      type = 1;
      inherit flake description checkinterval schedulingshares keepnr;
    };

  branchJobsets = mapAttrs (branch: settings:
    flakeJobset {
      flake = "git+${repoUrl}?ref=${branch}";
      inherit (settings) description checkinterval schedulingshares keepnr;
    })
  project.branches;

  # A pull request of the forge's list (Forgejo API: GET /repos/{owner}/{repo}/pulls) worth a
  # jobset: open, into a built branch, with a number and a full commit id. The jobset is
  # pinned to that commit, so every push to the pull request changes the spec and starts
  # an evaluation of exactly the pushed commit; the forge keeps refs/pull/<n>/head in the
  # base repository, forks included.
  isCommit = s: match "[0-9a-f]{40}" s != null;
  wanted = pull:
    isAttrs pull
    && (pull.state or "") == "open"
    && elem (pull.base.ref or "") project.pulls.bases
    && isInt (pull.number or null)
    && isCommit (pull.head.sha or "");

  pullJobset = pull: {
    name = "pr-${toString pull.number}";
    value = flakeJobset {
      flake = "git+${repoUrl}?ref=refs/pull/${toString pull.number}/head&rev=${pull.head.sha}";
      description = "#${toString pull.number} into ${pull.base.ref}: ${pull.title or ""}";
      inherit (project.pulls) checkinterval schedulingshares keepnr;
    };
  };

  # The jobsets for one list of pull requests (the JSON text the `pulls` input fetched). A
  # list that is not a JSON array (the forge answered an error) fails the evaluation: Hydra
  # then keeps the jobsets it has instead of disabling every pull request's.
  jobsets = pullsJson: let
    pulls = fromJSON pullsJson;
  in
    if !isList pulls
    then throw "hydra/jobsets.nix: the forge's pull request list is not a JSON array (${pullsJson})"
    else branchJobsets // listToAttrs (map pullJobset (filter wanted pulls));

  # The spec of the `.jobsets` jobset, committed as hydra/spec.json (the project's declarative
  # spec file). Its one job, `jobsets`, is hydra/jobsets.nix's JSON.
  pullsUrl = "${forge.url}/api/v1/repos/${forge.owner}/${forge.repo}/pulls?state=open&limit=${toString project.pulls.limit}";
  input = type: value: {
    inherit type value;
    emailresponsible = false;
  };
  spec =
    common
    // {
      type = 0;
      hidden = true;
      description = "Generates ${project.displayName}'s jobsets: ${builtins.concatStringsSep ", " (attrNames project.branches)} and one per open pull request (hydra/jobsets.nix)";
      nixexprinput = "src";
      nixexprpath = "hydra/jobsets.nix";
      checkinterval = project.pulls.refreshSeconds;
      schedulingshares = 100;
      keepnr = 3;
      inputs = {
        src = input "git" "${repoUrl} main";
        nixpkgs = input "git" "https://github.com/NixOS/nixpkgs.git ${project.nixpkgsBranch}";
        # A `path` input may be a URL: Hydra fetches it again at most every N seconds (the
        # number after the URL) and starts an evaluation when its content changed.
        pulls = input "path" "${pullsUrl} ${toString project.pulls.refreshSeconds}";
      };
    };
in {
  inherit project repoUrl spec jobsets;
  # What the flake's release aggregate records for the release gate (hydra/jobs.nix).
  flakeUrlOf = rev: "git+${repoUrl}?rev=${rev}";
}
