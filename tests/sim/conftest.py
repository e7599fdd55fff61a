"""Fixtures of the simulator tests: a PKI (helpers they import live in *_support.py)."""

from __future__ import annotations

import pytest

from simulators.pki import PKI


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return PKI.load_or_create(tmp_path_factory.mktemp("pki"))
