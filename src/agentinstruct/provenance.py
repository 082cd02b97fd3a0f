"""Versions of the packages a run depended on (recorded in every manifest and results file)."""

from __future__ import annotations

import platform
from importlib import metadata

PACKAGES = ("agentinstruct", "torch", "transformers", "datasets", "trl", "peft", "openai", "lm_eval")


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = metadata.version(pkg.replace("_", "-"))
        except metadata.PackageNotFoundError:
            pass
    return out
