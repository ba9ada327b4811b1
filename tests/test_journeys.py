"""The journeys through real applications (tests/journeys/), when checkouts of them are
given: DBTOOL_TEST_TEMPLATE_CHECKOUT (fastapi/full-stack-fastapi-template) and
DBTOOL_TEST_LITESTAR_CHECKOUT (litestar-org/litestar-fullstack). Each installs the app and
its dependencies from the package index into an environment of its own (about 40 s)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHECKOUTS = {
    "fastapi_template": os.environ.get("DBTOOL_TEST_TEMPLATE_CHECKOUT"),
    "litestar_fullstack": os.environ.get("DBTOOL_TEST_LITESTAR_CHECKOUT"),
}


@pytest.mark.postgres
@pytest.mark.parametrize("journey", sorted(CHECKOUTS))
def test_a_real_application_journey(postgres_available: None, journey: str) -> None:
    checkout = CHECKOUTS[journey]
    if not checkout:
        pytest.skip(f"no checkout given for {journey} (docs/development.md, Real applications)")
    done = subprocess.run(
        [sys.executable, "-m", f"tests.journeys.{journey}", checkout],
        cwd=ROOT, capture_output=True, text=True, timeout=1200,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "journey held" in done.stdout
