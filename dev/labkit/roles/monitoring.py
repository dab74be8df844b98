"""The monitoring host and the node exporters: Prometheus on the monitoring host with the
configuration nixos/lib/prometheus.nix generates for the lab (its targets are the inventory's
hosts) and the rule files of nixos/monitoring/rules/ every environment loads, Alertmanager beside it
with the configuration nixos/lib/alertmanager.nix generates (the operators' mail through the
lab's relay, Mailpit, with Alertmanager's own account), and a node exporter on every host. Lab changes,
each forced by the machine: the secret paths point into the lab's directory; the job that
discovers the services through the k3s API (there is no k3s here) is replaced by the apps
role's static targets when that role runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

from .. import credentials, spec
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
JAEGER_PORT = 16686
OTLP_PORT = 4318


def _install() -> None:
    apt_install([pkg for binary, pkg in PACKAGES.items() if shutil.which(binary) is None], "monitoring")


def monitoring_host(lab: spec.Lab) -> spec.Host:
    hosts = lab.of("monitoring")
    if len(hosts) != 1:
        raise SystemExit(f"lab: expected one monitoring host, found {len(hosts)}")
    return hosts[0]


def _generated() -> dict:
    # One evaluation for every output (each nix-instantiate re-reads the whole fleet).
    return spec.nix_eval(
        "let lib = import ./nixos/lib {}; in "
        "{ config = lib.prometheus.lab; secrets = lib.prometheusSecrets; rules = lib.ruleFiles; "
        "  alertmanager = lib.alertmanager.lab; alertmanagerSecrets = lib.alertmanagerSecrets; "
        "  jaeger = lib.jaeger.lab; jaegerStateDir = lib.jaegerStateDir; }"
    )


def _readable_copy(source, target) -> str:
    """`source` copied to `target` for the prometheus account alone (Prometheus and
    Alertmanager run as it here; the credentials stay root's), private from its creation."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
    with os.fdopen(fd, "wb") as f:
        f.write(source.read_bytes())
    shutil.chown(target, "prometheus", "prometheus")
    return str(target)


def _configure(config, text: str, pid) -> None:
    """Writes a configuration its process reads only at start; a running process with another
    one is stopped, for the caller to start again."""
    if config.exists() and config.read_text() == text:
        return
    config.write_text(text)
    stop(pid)


def _alertmanager_config(host: spec.Host, generated: dict) -> dict:
    """The configuration nixos/lib/alertmanager.nix generates for the lab, as it is; only its
    credential paths (systemd credentials on a NixOS host) point at lab copies: the account's
    password (credentials.alerts_smtp_password) and the relay's CA (the platform CA)."""
    am_dir = host.dir / "alertmanager"
    paths = generated["alertmanagerSecrets"]
    lab_files = {
        paths["smtpPassword"]: _readable_copy(credentials.alerts_smtp_password(), am_dir / "smtp-password"),
        paths["relayCa"]: _readable_copy(credentials.platform_ca(), am_dir / "relay-ca.crt"),
    }
    text = json.dumps(generated["alertmanager"], indent=1)
    for path, local in lab_files.items():
        text = text.replace(json.dumps(path), json.dumps(local))
    return json.loads(text)


def _jaeger_binary() -> str:
    """Jaeger as dev/up runs it: built once from the Go module proxy by dev/bootstrap.sh (the
    same release nix/jaeger.nix installs on the monitoring hosts, without its web UI)."""
    cached = spec.cache_dir() / "bin" / "jaeger"
    if not cached.exists():
        subprocess.run([str(spec.ROOT / "dev" / "bootstrap.sh"), "jaeger"], check=True)
    return str(cached)


def _jaeger(mon: spec.Host, generated: dict) -> None:
    """Jaeger with the configuration nixos/lib/jaeger.nix generates for the lab, as it is;
    only its storage directory (the unit's StateDirectory on a NixOS host) is the lab's."""
    jaeger_dir = mon.dir / "jaeger"
    (jaeger_dir / "data").mkdir(parents=True, exist_ok=True)
    shutil.chown(jaeger_dir / "data", "prometheus", "prometheus")
    text = json.dumps(generated["jaeger"], indent=1).replace(generated["jaegerStateDir"] + "/",
                                                             str(jaeger_dir / "data") + "/")
    config, pid = jaeger_dir / "jaeger.yaml", mon.dir / "run" / "jaeger.pid"
    _configure(config, text, pid)
    if pid_of(pid) is None:
        spawn(mon.netns, [_jaeger_binary(), "--config", str(config)], mon.dir / "log" / "jaeger.log", pid,
              user="prometheus")
    if not wait_tcp(mon.netns, mon.address, OTLP_PORT, 60):
        raise SystemExit(f"lab: Jaeger did not start (see {mon.dir / 'log' / 'jaeger.log'})")


def _config(lab: spec.Lab, host: spec.Host, generated: dict) -> dict:
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

    mon = monitoring_host(lab)
    prom_dir = mon.dir / "prometheus"
    (prom_dir / "data").mkdir(parents=True, exist_ok=True)
    shutil.chown(prom_dir / "data", "prometheus", "prometheus")
    config_file = prom_dir / "prometheus.json.yml"
    generated = _generated()
    config_file.write_text(json.dumps(_config(lab, mon, generated), indent=1))
    check = subprocess.run(["promtool", "check", "config", str(config_file)], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise SystemExit(f"lab: promtool refuses the lab's Prometheus configuration:\n{check.stdout}{check.stderr}")
    am_dir = mon.dir / "alertmanager"
    (am_dir / "data").mkdir(parents=True, exist_ok=True)
    shutil.chown(am_dir / "data", "prometheus", "prometheus")
    am_config = am_dir / "alertmanager.yml"
    _configure(am_config, json.dumps(_alertmanager_config(mon, generated), indent=1), mon.dir / "run" / "alertmanager.pid")
    check = subprocess.run(["amtool", "check-config", str(am_config)], capture_output=True, text=True, check=False)
    if check.returncode != 0:
        raise SystemExit(f"lab: amtool refuses the lab's Alertmanager configuration:\n{check.stdout}{check.stderr}")
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
    if not wait_tcp(mon.netns, mon.address, ALERTMANAGER_PORT, 60):
        raise SystemExit(f"lab: Alertmanager did not start (see {mon.dir / 'log' / 'alertmanager.log'})")
    _jaeger(mon, generated)
    log(f"monitoring: Prometheus at {mon.address}:{PROMETHEUS_PORT}, Alertmanager at :{ALERTMANAGER_PORT}, "
        f"Jaeger at :{JAEGER_PORT} (OTLP :{OTLP_PORT}), {len(lab.hosts)} node exporters")


def down(lab: spec.Lab) -> None:
    mon = monitoring_host(lab)
    for name in ("prometheus", "alertmanager", "jaeger"):
        stop(mon.dir / "run" / f"{name}.pid")
    for host in lab.hosts:
        stop(host.dir / "run" / "node-exporter.pid")


def targets(lab: spec.Lab) -> list[dict]:
    """Prometheus's active targets, read from inside the monitoring host."""
    mon = monitoring_host(lab)
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
