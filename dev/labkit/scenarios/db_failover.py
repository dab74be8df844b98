"""Database failover: the primary's host loses power under a write load, a standby takes over,
no acknowledged write is lost or doubled, and the old primary rejoins as a replica.

The load runs on an app host (the k3s server: the firewall lets the k3s hosts reach 5432), as a
service would connect: its own role and database, TLS verified against the lab CA, every member
in the connection string and `target_session_attrs=read-write` (libs/store does the same). Each
insert is one psql run whose exit status says whether the commit was acknowledged; with
synchronous_mode an acknowledged commit is on the synchronous standby too, the only member
Patroni may promote. The primary's host is then killed whole (every process of its namespace,
SIGKILL). Once writes succeed again, the old primary's etcd and Patroni start again, as after a
reboot, and it must come back as a replica of the new timeline (pg_rewind when it had diverged);
then the load stops and the table must hold every acknowledged sequence number exactly once.

Run inside the app host's namespace, `python3 -m labkit.scenarios.db_failover CONNINFO
PASSWORD_FILE RECORDS` is the load itself: it appends "seq start end ok|failed" lines (monotonic
clock, the same in every namespace) until stopped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from .. import spec
from ..proc import kill_namespace, log, ns_run, spawn, stop
from ..roles import postgres
from . import restore_node_exporters

TABLE = "lab_db_failover"
# The target. Patroni's leader key outlives the primary by up to its ttl (6 s; refreshed every
# loop_wait, 1 s), a standby takes it within a loop and promotes (~0.7 s), and the client's next
# attempt connects (~1 s): met only when the primary dies late in its refresh cycle. When the lost
# host also led etcd's raft, the new etcd leader first renews every lease to its full ttl.
RECOVERY_TARGET = 10.0
INTERVAL = 0.05  # between inserts: ~20 a second, enough resolution and little CPU
WARMUP_WRITES = 20  # acknowledged before the fault, and after the recovery before the rejoin


def load(conninfo: str, password_file: str, records: str) -> None:
    env = {**os.environ, "PGPASSWORD": Path(password_file).read_text().strip()}
    seq = 0
    next_at = time.monotonic()
    with open(records, "a") as out:
        while True:
            seq += 1
            start = time.monotonic()
            try:
                done = subprocess.run(
                    ["psql", conninfo, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", f"INSERT INTO {TABLE} (seq) VALUES ({seq})"],
                    env=env,
                    stdin=subprocess.DEVNULL,
                    timeout=30,
                    check=False,
                ).returncode == 0
            except subprocess.TimeoutExpired:
                done = False
            out.write(f"{seq} {start:.3f} {time.monotonic():.3f} {'ok' if done else 'failed'}\n")
            out.flush()
            # A steady pace, without bursts to catch up after a slow insert.
            next_at = max(next_at + INTERVAL, time.monotonic())
            time.sleep(max(0.0, next_at - time.monotonic()))


def _records(path: Path) -> list[tuple[int, float, float, bool]]:
    rows = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4:
            rows.append((int(parts[0]), float(parts[1]), float(parts[2]), parts[3] == "ok"))
    return rows


def _wait_records(path: Path, until, timeout: float, what: str) -> None:
    """Polls the load's records until `until(rows)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        rows = _records(path) if path.exists() else []
        if until(rows):
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:.0f} s ({len(rows)} inserts tried)")
        time.sleep(0.2)


def _healthy(lab: spec.Lab) -> dict[str, dict]:
    """The cluster's members once healthy; a failure of the scenario, not of the command, if not."""
    try:
        return postgres.wait_healthy(lab, 120)
    except SystemExit as error:
        raise AssertionError(str(error)) from None


def _rejoin(lab: spec.Lab, old: spec.Host) -> tuple[float, str]:
    """Starts the old primary's etcd and Patroni again; returns how long until it replicates as
    a member of the new timeline, and how it got there (from its Patroni log)."""
    log_file = old.dir / "log" / "patroni.log"
    offset = log_file.stat().st_size
    started = time.monotonic()
    postgres.start_host(lab, old)
    restore_node_exporters(lab)
    while True:
        member = postgres.members(lab).get(old.name, {})
        if member.get("role") in ("replica", "sync_standby") and member.get("state") in ("running", "streaming"):
            break
        assert time.monotonic() < started + 120, f"{old.name} did not rejoin as a replica within 120 s (see {log_file})"
        time.sleep(0.5)
    seconds = time.monotonic() - started
    with open(log_file, "rb") as f:
        f.seek(offset)
        rewound = b"pg_rewind exit code=0" in f.read()
    return seconds, "pg_rewind" if rewound else "no rewind needed"


def run(lab: spec.Lab) -> list[tuple[str, str]]:
    cluster = postgres.cluster()
    old = lab.host(postgres.leader(_healthy(lab)))
    client = lab.of("k3s-server")[0]
    database = cluster["databases"][0]
    conninfo = (
        f"host={cluster['clientHosts']} port={cluster['port']} dbname={database['name']} user={database['role']} "
        f"sslmode=verify-full sslrootcert={postgres.ca_file()} target_session_attrs=read-write connect_timeout=2"
    )
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8", "PGPASSWORD": postgres.password_file(database).read_text().strip()}

    def sql(statement: str) -> str:
        out = ns_run(client.netns, ["psql", conninfo, "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", statement], env=env, check=False)
        assert out.returncode == 0, f"psql from {client.name}: {out.stderr.strip()}"
        return out.stdout

    sql(f"DROP TABLE IF EXISTS {TABLE}; CREATE TABLE {TABLE} (seq bigint NOT NULL)")
    work = spec.lab_dir() / "scenarios" / "db_failover"
    work.mkdir(parents=True, exist_ok=True)
    records, pid_file = work / "records", work / "load.pid"
    records.unlink(missing_ok=True)
    spawn(
        client.netns,
        [sys.executable, "-m", __name__, conninfo, str(postgres.password_file(database)), str(records)],
        work / "load.log",
        pid_file,
        env={"PYTHONPATH": str(spec.ROOT / "dev")},
    )
    killed_at = None
    try:
        _wait_records(records, lambda rows: sum(ok for *_, ok in rows) >= WARMUP_WRITES, 60, "no write load")
        etcd_too = postgres.etcd_leader(lab) == old.name
        log(
            f"db_failover: writes from {client.name} to database {database['name']}; killing {old.name}, the primary"
            + (" and etcd's leader" if etcd_too else "")
        )
        killed_at = time.monotonic()
        kill_namespace(old.netns)

        def recovered(rows) -> bool:
            return sum(1 for _, start, _, ok in rows if ok and start >= killed_at) >= WARMUP_WRITES

        _wait_records(records, recovered, 120, "writes did not resume")
        back_at = min(end for _, start, end, ok in _records(records) if ok and start >= killed_at)
        new = postgres.leader(postgres.members(lab))
        log(f"db_failover: writes back after {back_at - killed_at:.1f} s on {new}; bringing {old.name} back")
        # The load goes on while the old primary rejoins, as the services' would: a rewound
        # standby is consistent only once it replays a record past the new primary's position
        # at the rewind, which an idle primary never writes.
        rejoin, how = _rejoin(lab, old)
        _healthy(lab)
    except AssertionError:
        if killed_at is not None:
            # Leave the lab whole for the scenarios that follow.
            postgres.start_host(lab, old)
        raise
    finally:
        stop(pid_file)
    log(f"db_failover: {old.name} back as a replica in {rejoin:.1f} s ({how})")

    rows = _records(records)
    # Inserts in flight at the kill count too: their commit was never acknowledged.
    failed = sum(1 for _, start, end, ok in rows if not ok and end >= killed_at and start <= back_at)
    failed_after = sum(1 for _, start, _, ok in rows if not ok and start > back_at)
    acknowledged = {seq for seq, *_, ok in rows if ok}
    answer = sql(f"SELECT seq, count(*) FROM {TABLE} GROUP BY seq")
    counts = {int(seq): int(n) for seq, n in (line.split("|") for line in answer.split())}
    lost = sorted(acknowledged - counts.keys())
    duplicates = sorted(seq for seq, n in counts.items() if n > 1)
    sql(f"DROP TABLE {TABLE}")

    recovery = back_at - killed_at
    measured = [
        ("killed", f"{old.name} (primary{', etcd leader' if etcd_too else ''})"),
        ("new primary", str(new)),
        ("time to recover", f"{recovery:.1f} s"),
        ("writes failed during the fault", str(failed)),
        ("writes failed after it (rejoin)", str(failed_after)),
        ("acknowledged writes", str(len(acknowledged))),
        ("acknowledged writes lost", str(len(lost))),
        ("duplicates", str(len(duplicates))),
        ("rejoin", f"{rejoin:.1f} s ({how})"),
    ]
    problems = []
    if lost:
        problems.append(f"acknowledged writes lost: {lost[:20]}")
    if duplicates:
        problems.append(f"writes present more than once: {duplicates[:20]}")
    if not new or new == old.name:
        problems.append(f"no new primary (leader: {new})")
    if recovery > RECOVERY_TARGET:
        problems.append(f"writes resumed after {recovery:.1f} s, over the {RECOVERY_TARGET:.0f} s target")
    assert not problems, "; ".join(problems) + " — " + "; ".join(f"{k}: {v}" for k, v in measured)
    return measured


if __name__ == "__main__":
    load(*sys.argv[1:])
