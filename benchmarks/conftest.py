"""pytest-benchmark suite (not in the default test run): every saved benchmark carries the
environment fingerprint, because a timing is only comparable with the machine it came from."""

from __future__ import annotations

import pytest

from bench.envinfo import fingerprint


@pytest.fixture(autouse=True)
def _fingerprint_in_extra_info(request: pytest.FixtureRequest) -> None:
    """Attach bench.envinfo.fingerprint() to each benchmark's extra_info (saved JSON)."""
    if "benchmark" in request.fixturenames:
        request.getfixturevalue("benchmark").extra_info["env"] = fingerprint()
