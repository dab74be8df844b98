"""The monitoring host and the node exporters: Prometheus on the monitoring host with the
configuration nixos/lib/prometheus.nix generates for the lab (its targets are the inventory's
hosts) and the rule files of nixos/monitoring/rules/ every environment loads, Alertmanager beside it, and a node exporter on every host. Lab changes,
each forced by the machine: the secret paths point into the lab's directory; the job that
discovers the services through the k3s API (there is no k3s here) is replaced by the apps
role's static targets when that role runs."""

from __future__ import annotations

import json
import shutil
import subprocess

from .. import spec
from ..proc import apt_install, log, ns_run, pid_of, spawn, stop, wait_tcp

PACKAGES = {
    "prometheus": "prometheus",
    "prometheus-node-exporter": "prometheus-node-exporter",
    "prometheus-alertmanager": "prometheus-alertmanager",
}
# nixos/ports.nix
PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
NODE_EXPORTER_PORT = 9100


def _install() -> None:
    apt_install([pkg for binary, pkg in PACKAGES.items() if shutil.which(binary) is None], "monitoring")


def _monitoring_host(lab: spec.Lab) -> spec.Host:
    hosts = lab.of("monitoring")
    if len(hosts) != 1:
        raise SystemExit(f"lab: expected one monitoring host, found {len(hosts)}")
    return hosts[0]


def _config(lab: spec.Lab, host: spec.Host) -> dict:
    # One evaluation for the three outputs (each nix-instantiate re-reads the whole fleet).
    generated = spec.nix_eval(
        "let lib = import ./nixos/lib {}; in "
        "{ config = lib.prometheus.lab; secrets = lib.prometheusSecrets; rules = lib.ruleFiles; }"
    )
    config, secrets = generated["config"], generated["secrets"]
    # The brokers' CA (public) copied where Prometheus, which runs as its own account, may read
    # it: the pulsar role keeps its secrets root-only.
    pulsar_ca = host.dir / "prometheus" / "pulsar-ca.crt"
    source = spec.lab_dir() / "secrets" / "pulsar" / "ca.crt"
    if source.exists():
        pulsar_ca.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, pulsar_ca)
        shutil.chown(pulsar_ca, "prometheus", "prometheus")
    lab_files = {secrets["pulsarCa"]: str(pulsar_ca)}
    jobs = []
    for job in config["scrape_configs"]:
        if "kubernetes_sd_configs" in job:
            continue
        ca = job.get("tls_config", {}).get("ca_file")
        if ca:
            job["tls_config"]["ca_file"] = lab_files.get(ca, ca)
        jobs.append(job)
    try:
        from . import apps  # noqa: PLC0415 — the apps role is optional in a partial lab
    except ImportError:
        apps = None
    if apps is not None and hasattr(apps, "scrape_config"):
        jobs.append(apps.scrape_config(lab))
    config["scrape_configs"] = jobs
    # The rule files every environment loads, copied as they are where Prometheus, which runs
    # as its own account, may read them (the checkout may be under root's home).
    rules_dir = host.dir / "prometheus" / "rules"
    rules_dir.mkdir(parents=True, exist_ok=True)
    config["rule_files"] = []
    for name in generated["rules"]:
        copy = rules_dir / name
        shutil.copyfile(spec.ROOT / "nixos" / "monitoring" / "rules" / name, copy)
        shutil.chown(copy, "prometheus", "prometheus")
        config["rule_files"].append(str(copy))
    return config


def up(lab: spec.Lab) -> None:
    _install()
    for host in lab.hosts:
        pid = host.dir / "run" / "node-exporter.pid"
        if pid_of(pid) is None:
            spawn(
                host.netns,
                [
                    "prometheus-node-exporter",
                    f"--web.listen-address={host.address}:{NODE_EXPORTER_PORT}",
                    # The hosts share this machine's disks and kernel: the per-host labels are
                    # what tells them apart, not the numbers.
                    "--no-collector.systemd",
                ],
                host.dir / "log" / "node-exporter.log",
                pid,
                user="prometheus",
            )

    mon = _monitoring_host(lab)
    prom_dir = mon.dir / "prometheus"
    (prom_dir / "data").mkdir(parents=True, exist_ok=True)
    shutil.chown(prom_dir / "data", "prometheus", "prometheus")
    config_file = prom_dir / "prometheus.json.yml"
    config_file.write_text(json.dumps(_config(lab, mon), indent=1))
    check = subprocess.run(["promtool", "check", "config", str(config_file)], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise SystemExit(f"lab: promtool refuses the lab's Prometheus configuration:\n{check.stdout}{check.stderr}")
    am_dir = mon.dir / "alertmanager"
    (am_dir / "data").mkdir(parents=True, exist_ok=True)
    shutil.chown(am_dir / "data", "prometheus", "prometheus")
    am_config = am_dir / "alertmanager.yml"
    # No receiver to notify in the lab: the alerts are read from Prometheus and Alertmanager.
    am_config.write_text(json.dumps({"route": {"receiver": "lab"}, "receivers": [{"name": "lab"}]}))

    if pid_of(mon.dir / "run" / "alertmanager.pid") is None:
        spawn(
            mon.netns,
            [
                "prometheus-alertmanager",
                f"--config.file={am_config}",
                f"--storage.path={am_dir / 'data'}",
                f"--web.listen-address={mon.address}:{ALERTMANAGER_PORT}",
                "--cluster.listen-address=",
            ],
            mon.dir / "log" / "alertmanager.log",
            mon.dir / "run" / "alertmanager.pid",
            user="prometheus",
        )
    if pid_of(mon.dir / "run" / "prometheus.pid") is not None:
        # Already running: it reads the configuration just written (the apps' targets, the
        # CA) on a reload.
        ns_run(mon.netns, ["curl", "-sf", "-X", "POST", f"http://{mon.address}:{PROMETHEUS_PORT}/-/reload"], check=False)
    else:
        spawn(
            mon.netns,
            [
                "prometheus",
                f"--config.file={config_file}",
                f"--storage.tsdb.path={prom_dir / 'data'}",
                "--storage.tsdb.retention.time=2d",
                f"--web.listen-address=0.0.0.0:{PROMETHEUS_PORT}",
                "--web.enable-lifecycle",
            ],
            mon.dir / "log" / "prometheus.log",
            mon.dir / "run" / "prometheus.pid",
            user="prometheus",
        )
    if not wait_tcp(mon.netns, mon.address, PROMETHEUS_PORT, 60):
        raise SystemExit(f"lab: Prometheus did not start (see {mon.dir / 'log' / 'prometheus.log'})")
    log(f"monitoring: Prometheus at {mon.address}:{PROMETHEUS_PORT}, {len(lab.hosts)} node exporters")


def down(lab: spec.Lab) -> None:
    mon = _monitoring_host(lab)
    for name in ("prometheus", "alertmanager"):
        stop(mon.dir / "run" / f"{name}.pid")
    for host in lab.hosts:
        stop(host.dir / "run" / "node-exporter.pid")


def targets(lab: spec.Lab) -> list[dict]:
    """Prometheus's active targets, read from inside the monitoring host."""
    mon = _monitoring_host(lab)
    out = ns_run(mon.netns, ["curl", "-sf", f"http://{mon.address}:{PROMETHEUS_PORT}/api/v1/targets?state=active"], check=False)
    if out.returncode != 0:
        return []
    return json.loads(out.stdout)["data"]["activeTargets"]


def status(lab: spec.Lab) -> list[str]:
    found = targets(lab)
    if not found:
        return ["monitoring: Prometheus not answering"]
    up_count = sum(1 for t in found if t["health"] == "up")
    down_list = [f"{t['labels'].get('job')}@{t['labels'].get('host', t['labels'].get('instance'))}" for t in found if t["health"] != "up"]
    line = f"monitoring: {up_count}/{len(found)} targets up"
    return [line + (f"; not up: {' '.join(down_list)}" if down_list else "")]
