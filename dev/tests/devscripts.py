"""Loads a script of dev/ as a module for its tests: `dashboard = load("dashboard")` imports
dev/dashboard.py, `load("fleet/hosts")` dev/fleet/hosts.py as `fleet_hosts` (the scripts are
files, not a package)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

DEV = Path(__file__).resolve().parent.parent


def load(name: str) -> ModuleType:
    module_name = name.replace("/", "_")
    spec = importlib.util.spec_from_file_location(module_name, DEV / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module
