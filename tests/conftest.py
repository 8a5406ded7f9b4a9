"""Shared fixtures: small synthetic sets written in every real layout (generated once per test run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medis.data.synthetic import generate

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

# kind -> (n, size); small so that the whole set of layouts is written in a few seconds.
SYNTHETIC_SETS = {
    "isic2016": 20,
    "isic2017": 20,
    "isic2018": 20,
    "kvasir": 12,
    "cvc_clinicdb": 12,
    "pranet": 30,
    "generic_dermoscopy": 8,
}


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with one small synthetic set per kind: ``<root>/<kind>``, images 64 px high."""
    root = tmp_path_factory.mktemp("synthetic")
    for kind, n in SYNTHETIC_SETS.items():
        generate(kind, root / kind, n=n, size=64, seed=1, progress=False)
    return root
