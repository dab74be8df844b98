"""Credentials that more than one role uses, made once and kept with the lab's data (what the
postgres and pulsar roles make for themselves stays theirs):

  platform CA     the `platform` kind of cluster.caFiles (nixos/workloads.nix): the CA that signs
                  the certificates of the services serving HTTPS (workloads' `tls`) and, in the
                  lab, the mail relay's (fleet.nix: the lab's smtpRelay.ca). The apps role puts
                  its certificate in the pods' CA directory; nobody gets its key.
  certificates    server certificates of that CA (serverAuth) for DNS names and addresses: identity's
                  `tls.crt`/`tls.key` (apps), Mailpit's STARTTLS certificate (smtp). Kept while one
                  verifies against the CA and names them all, made again otherwise.
  smtp password   notifications' `smtp-password` and the password of the relay's account
                  (smtpRelay.username): one random value, which the smtp role gives Mailpit and
                  the apps role gives notifications.
  alerts password the password of Alertmanager's own account on the relay (alerts.username),
                  which the smtp role gives Mailpit and the monitoring role Alertmanager.

Root's files under lab_dir()/secrets (directories 0700, keys and the password 0600); each role
copies what its processes read to where they read it.
"""

from __future__ import annotations

import os
import secrets
import subprocess
from pathlib import Path

from . import spec
from .proc import log, run

# The kind of cluster.caFiles this CA is (workloads.nix), and smtpRelay.ca's value for it.
PLATFORM = "platform"


def _private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def _platform_dir() -> Path:
    return _private_dir(spec.lab_dir() / "secrets" / PLATFORM)


def _ca() -> tuple[Path, Path]:
    """The platform CA's key and certificate, made on first use."""
    key, cert = _platform_dir() / "ca.key", _platform_dir() / "ca.crt"
    if not (key.exists() and cert.exists()):
        log("credentials: making the lab's platform CA")
        run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-days", "3650", "-subj", "/CN=comptoir lab platform CA",
             "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-keyout", str(key), "-out", str(cert)])
        key.chmod(0o600)
        cert.chmod(0o644)
    return key, cert


def platform_ca() -> Path:
    """The platform CA's certificate (what clients verify the services and the relay with)."""
    return _ca()[1]


def _valid_for(cert: Path, ca_cert: Path, dns: tuple[str, ...], addresses: tuple[str, ...]) -> bool:
    """Whether `cert` verifies against the CA and names every one of `dns` and `addresses`."""
    if subprocess.run(["openssl", "verify", "-CAfile", str(ca_cert), str(cert)],
                      capture_output=True, check=False).returncode != 0:
        return False
    checks = [("-checkhost", n) for n in dns] + [("-checkip", a) for a in addresses]
    return all(
        "does match" in run(["openssl", "x509", "-in", str(cert), "-noout", flag, value]).stdout
        for flag, value in checks
    )


def server_certificate(name: str, dns: tuple[str, ...] = (), addresses: tuple[str, ...] = ()) -> tuple[Path, Path]:
    """A certificate of the platform CA for `dns` names and IP `addresses` and its key,
    `<name>.crt`/`<name>.key`: kept while valid for them, made again otherwise."""
    ca_key, ca_cert = _ca()
    base = _platform_dir()
    cert, key = base / f"{name}.crt", base / f"{name}.key"
    if key.exists() and cert.exists() and _valid_for(cert, ca_cert, dns, addresses):
        return cert, key
    log(f"credentials: a certificate of the platform CA for {' '.join(dns + addresses)}")
    csr, extensions = base / f"{name}.csr", base / f"{name}.ext"
    sans = ",".join([f"DNS:{n}" for n in dns] + [f"IP:{a}" for a in addresses])
    extensions.write_text(
        f"subjectAltName={sans}\nbasicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n"
    )
    run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-subj", f"/CN={(dns + addresses)[0]}", "-keyout", str(key), "-out", str(csr)])
    key.chmod(0o600)
    run(["openssl", "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key),
         "-set_serial", "0x" + secrets.token_hex(16), "-days", "825", "-extfile", str(extensions),
         "-out", str(cert)])
    csr.unlink()
    extensions.unlink()
    return cert, key


def _random_secret(name: str, newline: bool = True) -> Path:
    """A file of the lab's secrets holding a random value, made once; ends with a newline unless
    told not to (the services' secret files may; Alertmanager sends a password file as it is)."""
    path = _private_dir(spec.lab_dir() / "secrets" / "smtp") / name
    if not path.exists():
        partial = path.with_name(f".{name}.partial")
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(24) + ("\n" if newline else ""))
        partial.rename(path)
    return path


def smtp_password() -> Path:
    """The file of the relay account's password (notifications')."""
    return _random_secret("password")


def alerts_smtp_password() -> Path:
    """The file of Alertmanager's account's password at the relay, without a trailing newline
    (secrets/README.md: Alertmanager would send it)."""
    return _random_secret("alerts-smtp-password", newline=False)
