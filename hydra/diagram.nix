# The build workflow as Graphviz DOT: commit → forge → Hydra evaluation → builds → checks →
# release gate → deploy → rollback, generated from the Hydra project (hydra/project.nix,
# hydra/lib.nix), the flake's jobs as Hydra sees them (hydra/job-names.nix: the real job
# names and the release's constituents) and the inventory's rollout order. dev/check-hydra.sh
# renders it with `dot -Tsvg` and fails when docs/diagrams/build-workflow.svg differs, so the
# picture cannot drift from the code. Regenerate with: dev/check-hydra.sh --write
{
  hydraLib ? import ./lib.nix {},
  jobs ? import ./job-names.nix {},
  fleetLib ? import ../nixos/lib {},
}: let
  inherit (builtins) attrNames concatStringsSep filter genList length match tail toString head;
  inherit (hydraLib) project;

  count = list: toString (length list);
  shipped = "x86_64-linux";
  systems = attrNames jobs.packages;

  # The jobs of one kind on the shipped platform, by the shape of their names.
  packages = jobs.packages.${shipped};
  checks = jobs.checks.${shipped};
  named = regex: filter (name: match regex name != null);
  images = named ".*-image" packages;
  sboms = named ".*-sbom" packages;
  codeChecks = named "clippy|fmt|toml-fmt|audit|deny|nextest" checks;
  deployChecks = named "deploy-.*" checks;

  env = project.releaseEnvironment;
  rollout = fleetLib.rollout.${env};
  canary = head rollout;
  constituents = jobs.release.releaseJson.constituents;
  gate = "${project.name}:main:${project.releaseJob}";

  # A long list of names, four to a line.
  wrap = names: let
    rows = (length names + 3) / 4;
    row = i:
      concatStringsSep ", " (filter (x: x != null) (genList (j: let
        k = i * 4 + j;
      in
        if k < length names
        then builtins.elemAt names k
        else null)
      4));
  in
    concatStringsSep ",<br/>" (genList row rows);
  branches = attrNames project.branches;
in ''
  digraph build_workflow {
    graph [rankdir=TB, fontname="Helvetica", fontsize=12, nodesep=0.4, ranksep=0.5,
           label=<<b>${project.displayName}: from a commit to ${env}</b><br/><font point-size="10">generated from hydra/ and the flake by hydra/diagram.nix</font>>, labelloc=t];
    node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica", fontsize=10];
    edge [fontname="Helvetica", fontsize=9];

    commit [label=<<b>commit</b><br/>push to ${concatStringsSep " or " branches}<br/>or to a pull request>];
    forge [fillcolor=aliceblue, label=<<b>Forgejo</b><br/>${project.forge.url}<br/>${project.forge.owner}/${project.forge.repo}>];
    jobsets [fillcolor=aliceblue, label=<<b>Hydra: .jobsets</b><br/>hydra/spec.json → hydra/jobsets.nix<br/>jobsets ${concatStringsSep ", " branches}, pr-&lt;n&gt; per open pull request<br/>(pull list refetched every ${toString project.pulls.refreshSeconds} s)>];
    evaluation [fillcolor=aliceblue, label=<<b>Hydra evaluation</b><br/>the flake's hydraJobs (hydra/jobs.nix)<br/>one jobset per branch and pull request>];

    subgraph cluster_builds {
      label="builds (every jobset)"; style="rounded"; color=gray60;
      builds [label=<<b>packages</b> (${concatStringsSep ", " systems})<br/>${count jobs.services} services, ${count images} images, ${count sboms} SBOMs, pulsar, xtask<br/><b>hosts</b>: ${count jobs.hosts} NixOS systems>];
      tests [label=<<b>checks</b><br/>${concatStringsSep ", " codeChecks}<br/>${concatStringsSep ", " deployChecks}>];
    }

    release [fillcolor=lightyellow, label=<<b>release</b> (aggregate, ${count constituents} constituents)<br/>${shipped} packages and checks<br/>+ the ${toString (length rollout)} ${env} hosts' systems<br/>writes release.json (commit, source)>];
    hook [fillcolor=lightyellow, label=<<b>release gate</b><br/>RunCommand on ${gate} queues the build;<br/>the gate's own service (hydra/release-gate):<br/>succeeded, newest build only, one deploy at a time,<br/>recorded for Prometheus>];
    deploy [fillcolor=honeydew, label=<<b>deploy ${env}</b> (deploy-rs)<br/>canary ${canary}, health gate,<br/>then, one call, in inventory order:<br/>${wrap (tail rollout)}>];
    rollback [fillcolor=mistyrose, label=<<b>rollback</b><br/>deploy-rs magic rollback per host<br/>(activation not confirmed);<br/>canary unhealthy: the rest is not deployed>];
    red [fillcolor=mistyrose, label=<<b>red build</b><br/>nothing deployed;<br/>the gate stays on the last release>];

    commit -> forge;
    forge -> jobsets [label="pull list (API)"];
    forge -> evaluation [label="push webhook, polling"];
    jobsets -> evaluation [label="jobset specs"];
    evaluation -> builds;
    builds -> tests;
    tests -> release [label="main only gates ${env}"];
    release -> hook [label="build finished"];
    hook -> deploy [label="succeeded, newer than last deploy"];
    hook -> red [label="failed, other job or older"];
    deploy -> rollback [style=dashed, label="failure"];
  }
''
