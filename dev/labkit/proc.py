"""Processes of the lab: started detached inside a host's namespace with a log and a pid file,
stopped by pid file or all at once per namespace (`ip netns pids`)."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import time
from pathlib import Path

PROBE = Path(__file__).with_name("probe.py")


def log(message: str) -> None:
    print(f"lab: {message}", file=sys.stderr, flush=True)


def run(argv: list[str], check: bool = True, input: str | None = None, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(argv, input=input, capture_output=True, text=True, check=False, **kw)
    if check and out.returncode != 0:
        raise SystemExit(f"lab: {' '.join(argv)} failed ({out.returncode}): {out.stderr.strip()}")
    return out


def ns_argv(ns: str, argv: list[str], user: str | None = None) -> list[str]:
    """argv run inside namespace `ns`, as `user` (with its groups) when given."""
    prefix = ["ip", "netns", "exec", ns]
    if user:
        prefix += ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--"]
    return prefix + argv


def ns_run(ns: str, argv: list[str], user: str | None = None, **kw) -> subprocess.CompletedProcess:
    return run(ns_argv(ns, argv, user), **kw)


def spawn(
    ns: str,
    argv: list[str],
    log_path: Path,
    pid_path: Path,
    env: dict[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
) -> int:
    """Starts argv detached (own session) in `ns`, with a clean environment plus `env` (an
    inherited PGPASSWORD or JAVA_TOOL_OPTIONS would change what runs). Returns its pid, which
    is the program's own: `ip netns exec` and setpriv exec it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    pid_path.parent.mkdir(parents=True, exist_ok=True)
    base = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"), "LANG": "C.UTF-8"}
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            ns_argv(ns, argv, user),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**base, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    pid_path.write_text(f"{proc.pid}\n")
    return proc.pid


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own child that exited) is not alive.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def reap() -> None:
    """Collects our exited children, so they do not linger as zombies."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def pid_of(pid_path: Path) -> int | None:
    try:
        pid = int(pid_path.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def stop(pid_path: Path, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
    """Stops the process of a pid file: `sig`, then SIGKILL after `timeout` seconds."""
    pid = pid_of(pid_path)
    if pid is not None:
        _signal_group(pid, sig)
        deadline = time.monotonic() + timeout
        while alive(pid) and time.monotonic() < deadline:
            reap()
            time.sleep(0.1)
        if alive(pid):
            _signal_group(pid, signal.SIGKILL)
            while alive(pid):
                reap()
                time.sleep(0.05)
    pid_path.unlink(missing_ok=True)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def namespace_pids(ns: str) -> list[int]:
    out = run(["ip", "netns", "pids", ns], check=False).stdout.split()
    return [int(p) for p in out if p.isdigit()]


def kill_namespace(ns: str, timeout: float = 20.0) -> int:
    """SIGKILLs every process of namespace `ns` (a host losing power) and waits until they are
    gone. Returns how many there were."""
    pids = namespace_pids(ns)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        reap()
        if not any(alive(p) for p in pids):
            break
        time.sleep(0.05)
    return len(pids)


def wait_tcp(ns: str, address: str, port: int, timeout: float) -> bool:
    """True once a TCP connection from inside `ns` to address:port succeeds."""
    return ns_run(ns, [sys.executable, str(PROBE), "wait-tcp", address, str(port), str(timeout)], check=False).returncode == 0


def ensure_system_account(user: str, who: str) -> None:
    """A system account with its own group, no home and no shell (what a NixOS module declares
    for a daemon), created when missing."""
    try:
        pwd.getpwnam(user)
    except KeyError:
        run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
             "--shell", "/usr/sbin/nologin", user])
        log(f"{who}: created the system account {user}")


def apt_install(packages: list[str], who: str) -> None:
    """Installs missing Debian packages (`apt-get update` first only when the install fails on
    stale lists), waiting for dpkg's lock rather than failing when another install holds it."""
    if not packages:
        return
    log(f"{who}: installing {' '.join(packages)}")
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    cmd = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300", *packages]
    if subprocess.run(cmd, env=env, capture_output=True, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, check=True)
        subprocess.run(cmd, env=env, capture_output=True, check=True)


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
