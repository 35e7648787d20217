"""GGUF export on the tiny model, for real: llama.cpp's converter, quantized by llama-cpp-python, the file's
metadata checked against the run's fingerprint, run by llama.cpp and compared with the workbench's own
greedy answer, with a Modelfile and a README card beside it.

Runs where GGUF export is set up (`pip install -e ".[gguf]"` and `workbench gguf-setup`, README "GGUF");
skipped elsewhere, saying so (CI's fresh environment does not build llama-cpp-python: 15 minutes)."""

from __future__ import annotations

import json

import pytest

from tests.engine.test_engine import trained  # noqa: F401  (the module's trained run)
from workbench import requests as rq
from workbench.save_kinds import GGUF_KINDS, unavailable_reason

pytestmark = [pytest.mark.engine,
              pytest.mark.skipif(unavailable_reason("gguf_f16") is not None,
                                 reason=f"GGUF export is not set up here: {unavailable_reason('gguf_f16')}")]


@pytest.mark.parametrize("kind", GGUF_KINDS)
def test_each_gguf_reloads_in_llama_cpp_and_answers_as_the_workbench(engine, trained, tmp_path, kind):  # noqa: F811
    target = tmp_path / kind
    saved = engine.call(rq.Save(kind=kind, path=str(target), run_dir=str(trained.path)), timeout=600)
    check = saved.verification
    assert check is not None and check.passed and check.loader.startswith("llama-cpp-python")
    files = sorted(p.name for p in target.iterdir())
    gguf_files = [f for f in files if f.endswith(".gguf")]
    assert len(gguf_files) == 1 and {"Modelfile", "README.md", "workbench.json", "fingerprint.json"} <= set(files)
    assert f"FROM ./{gguf_files[0]}" in (target / "Modelfile").read_text(encoding="utf-8")
    assert json.loads((target / "workbench.json").read_text(encoding="utf-8"))["kind"] == kind
    if kind == "gguf_f16":  # 16-bit: the same greedy answer, token for token
        assert check.tokens_equal == check.tokens_compared == 32, check.detail
    else:  # quantized: its agreement is measured and reported
        assert 0.5 <= check.agreement <= 1.0 and "agreement" in check.detail
    assert not list(tmp_path.glob(".*partial*")) and not list(tmp_path.glob(".gguf-work-*")), "nothing half-written"
