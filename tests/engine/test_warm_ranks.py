"""The test harness's warm ranks (tests/warm_rank.py) must never run a rank under imports made for another
environment: a rank whose launch variables differ from those its server imported under is refused, with
the reason, and torchrun sees it fail."""

from __future__ import annotations

import os
import subprocess

import pytest

from tests import warm

pytestmark = pytest.mark.engine


def test_a_rank_is_refused_by_a_server_that_imported_under_another_environment(tmp_path):
    # The commands' server imported as one process (no WORLD_SIZE): a rank of two must not be forked from it.
    env = {**os.environ, "WORKBENCH_WARM_RANK_SOCKET": warm.server().socket_path, "WORLD_SIZE": "2",
           "LOCAL_WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}
    proc = subprocess.run([str(warm.RANK_SHIM), "-u", "-m", "workbench.engine.rank", str(tmp_path / "run")],
                          env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 97, proc.stdout + proc.stderr
    assert "warm rank: this server imported with" in proc.stderr and "'WORLD_SIZE': '2'" in proc.stderr
    assert not (tmp_path / "run").exists()
