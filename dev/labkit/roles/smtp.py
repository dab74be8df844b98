"""The environment's mail relay (`smtpRelay` of the lab in nixos/fleet.nix): Mailpit stands in
for it at that address, in a namespace of its own, so notifications send real SMTP and the
tests read the mails back through Mailpit's API (from inside the lab)."""

from __future__ import annotations

import shutil
import subprocess

from .. import spec
from ..proc import log, pid_of, spawn, stop, wait_tcp

UI_PORT = 8025


def _paths():
    base = spec.lab_dir() / "smtp"
    return base / "mailpit.log", base / "mailpit.pid"


def _binary() -> str:
    cached = spec.cache_dir() / "bin" / "mailpit"
    found = shutil.which("mailpit") or (str(cached) if cached.exists() else None)
    if found:
        return found
    # dev/bootstrap.sh builds it from the Go module proxy into $COMPTOIR_CACHE/bin.
    subprocess.run([str(spec.ROOT / "dev" / "bootstrap.sh")], check=True)
    return str(cached)


def up(lab: spec.Lab) -> None:
    log_path, pid_path = _paths()
    relay = lab.smtp_relay
    ns = spec.netns_name("lab-smtp")
    if pid_of(pid_path) is None:
        spawn(
            ns,
            [
                _binary(),
                "--smtp", f"{relay['address']}:{relay['port']}",
                "--listen", f"{relay['address']}:{UI_PORT}",
                # No --database: Mailpit keeps the mails in a temporary file that goes with it.
            ],
            log_path,
            pid_path,
        )
    if not wait_tcp(ns, relay["address"], relay["port"], 30):
        raise SystemExit(f"lab: the mail relay did not start (see {log_path})")
    log(f"smtp: Mailpit at {relay['address']}:{relay['port']} (API :{UI_PORT})")


def down(_lab: spec.Lab) -> None:
    stop(_paths()[1])


def status(lab: spec.Lab) -> list[str]:
    state = "running" if pid_of(_paths()[1]) else "stopped"
    return [f"smtp: Mailpit {state} at {lab.smtp_relay['address']}:{lab.smtp_relay['port']}"]
