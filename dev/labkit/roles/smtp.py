"""The environment's mail relay (`smtpRelay` of the lab in nixos/fleet.nix): Mailpit stands in
for it at that address, in a namespace of its own, so notifications send real SMTP and the
tests read the mails back through Mailpit's API (plain HTTP on UI_PORT, from inside the lab).

Mailpit is the relay the generated settings describe: TLS as smtpRelay.tls says (`starttls`:
STARTTLS required before anything else), with a certificate for smtpRelay.host (the name
notifications connects to and verifies; the lab's is the relay's address) from the CA
smtpRelay.ca names (the lab's platform CA, labkit/credentials.py, which notifications gets
as its smtp.ca_file), and two accounts: smtpRelay.username with the password notifications reads from its
`smtp-password` (credentials.smtp_password), and alerts.username, Alertmanager's
(credentials.alerts_smtp_password): a session that does not authenticate, or not over TLS,
cannot hand over mail.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import subprocess
from pathlib import Path

from .. import credentials, spec
from ..proc import log, pid_of, run, spawn, stop, wait_tcp

UI_PORT = 8025
# smtpRelay.tls → the Mailpit flag that requires it.
REQUIRE_TLS = {"starttls": "--smtp-require-starttls", "tls": "--smtp-require-tls"}


def _dir() -> Path:
    return spec.lab_dir() / "smtp"


def _paths() -> tuple[Path, Path]:
    return _dir() / "mailpit.log", _dir() / "mailpit.pid"


def _binary() -> str:
    cached = spec.cache_dir() / "bin" / "mailpit"
    found = shutil.which("mailpit") or (str(cached) if cached.exists() else None)
    if found:
        return found
    # dev/bootstrap.sh builds it from the Go module proxy into $COMPTOIR_CACHE/bin.
    subprocess.run([str(spec.ROOT / "dev" / "bootstrap.sh")], check=True)
    return str(cached)


def _account_file(accounts: dict[str, Path]) -> Path:
    """Mailpit's password file (htpasswd lines): one line per account (notifications' and
    Alertmanager's), each password stored as a SHA-512 crypt hash of its file's value."""
    lines = []
    for username, password_file in accounts.items():
        password = password_file.read_text().strip()
        hashed = run(["openssl", "passwd", "-6", "-stdin"], input=password + "\n").stdout.strip()
        lines.append(f"{username}:{hashed}\n")
    path = _dir() / "accounts"
    partial = path.with_name(".accounts.partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.writelines(lines)
    partial.rename(path)
    return path


def _usernames() -> set[str]:
    """The accounts of Mailpit's password file as it stands (none before the first `up`)."""
    try:
        return {line.split(":", 1)[0] for line in (_dir() / "accounts").read_text().splitlines() if line}
    except FileNotFoundError:
        return set()


def _security_arguments(relay: dict, alerts: dict) -> list[str]:
    """Mailpit's TLS and authentication flags for what smtpRelay says."""
    if relay["tls"] not in REQUIRE_TLS:
        raise SystemExit(f"lab: smtp: Mailpit cannot stand in for a relay with tls = {relay['tls']!r}")
    if relay["ca"] != credentials.PLATFORM:
        raise SystemExit(f"lab: smtp: the lab's relay has a certificate of the lab's {credentials.PLATFORM} "
                         f"CA only (smtpRelay.ca = {credentials.PLATFORM!r}), not of {relay['ca']!r}")
    try:
        names = {"addresses": (str(ipaddress.ip_address(relay["host"])),)}
    except ValueError:
        names = {"dns": (relay["host"],)}
    cert, key = credentials.server_certificate("smtp-relay", **names)
    arguments = ["--smtp-tls-cert", str(cert), "--smtp-tls-key", str(key), REQUIRE_TLS[relay["tls"]]]
    if relay["username"] is not None:
        accounts = {relay["username"]: credentials.smtp_password(),
                    alerts["username"]: credentials.alerts_smtp_password()}
        arguments += ["--smtp-auth-file", str(_account_file(accounts))]
    return arguments


def _running_argv(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


def up(lab: spec.Lab) -> None:
    log_path, pid_path = _paths()
    relay = lab.smtp_relay
    ns = spec.netns_name("lab-smtp")
    _dir().mkdir(mode=0o700, parents=True, exist_ok=True)
    _dir().chmod(0o700)
    before = _usernames()
    argv = [
        _binary(),
        "--smtp", f"{relay['address']}:{relay['port']}",
        "--listen", f"{relay['address']}:{UI_PORT}",
        # No --database: Mailpit keeps the mails in a temporary file that goes with it.
        *_security_arguments(relay, lab.raw["alerts"]),
    ]
    pid = pid_of(pid_path)
    if pid is not None and (_running_argv(pid) != argv or _usernames() != before):
        # Mailpit reads its account file when it starts: a new account needs a restart.
        log("smtp: Mailpit runs with other settings or accounts: restarting it")
        stop(pid_path)
        pid = None
    if pid is None:
        spawn(ns, argv, log_path, pid_path)
    if not wait_tcp(ns, relay["address"], relay["port"], 30):
        raise SystemExit(f"lab: the mail relay did not start (see {log_path})")
    account = f", accounts {', '.join(sorted(_usernames()))}" if relay["username"] is not None else ""
    log(f"smtp: Mailpit at {relay['address']}:{relay['port']} ({relay['tls']} required{account}; API :{UI_PORT})")


def down(_lab: spec.Lab) -> None:
    stop(_paths()[1])


def status(lab: spec.Lab) -> list[str]:
    state = "running" if pid_of(_paths()[1]) else "stopped"
    relay = lab.smtp_relay
    return [f"smtp: Mailpit {state} at {relay['address']}:{relay['port']} ({relay['tls']})"]
