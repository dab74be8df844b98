"""Tiny network probes run INSIDE a lab namespace (`ip netns exec NS python3 probe.py ...`): the
machine's own namespace must never be used as a lab client (docs/lab.md).

  wait-tcp ADDRESS PORT TIMEOUT   exit 0 once a TCP connection succeeds, 1 at the timeout
  tcp ADDRESS PORT [TIMEOUT]      one attempt: prints open, refused or timeout (exit 0, 1, 2)
  scan ADDRESS PORT...            one attempt per port, in parallel: prints "PORT state" lines
"""

from __future__ import annotations

import concurrent.futures
import socket
import sys
import time


def attempt(address: str, port: int, timeout: float) -> str:
    try:
        with socket.create_connection((address, port), timeout=timeout):
            return "open"
    except ConnectionRefusedError:
        return "refused"
    except (TimeoutError, socket.timeout):
        return "timeout"
    except OSError as error:
        return f"error:{error.errno}"


def main(argv: list[str]) -> int:
    command, *args = argv
    if command == "wait-tcp":
        address, port, timeout = args[0], int(args[1]), float(args[2])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if attempt(address, port, 1.0) == "open":
                return 0
            time.sleep(0.2)
        return 1
    if command == "tcp":
        state = attempt(args[0], int(args[1]), float(args[2]) if len(args) > 2 else 2.0)
        print(state)
        return {"open": 0, "refused": 1}.get(state, 2)
    if command == "scan":
        address, ports = args[0], [int(p) for p in args[1:]]
        with concurrent.futures.ThreadPoolExecutor(max_workers=32) as pool:
            for port, state in zip(ports, pool.map(lambda p: attempt(address, p, 1.5), ports)):
                print(port, state)
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
