"""GGUF export's parts that need no llama.cpp build: the GGUF metadata checked against the run's template
fingerprint (a changed template, EOS or vocabulary is caught and said), the Ollama Modelfile, the export
kinds and their set-up message, and `workbench gguf-setup` unpacking the converter from a source archive."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from tests.ui import scenarios

from workbench import save_kinds
from workbench.config import RunConfig
from workbench.engine.gguf import GgufMetadata, check_metadata
from workbench.errors import UserError
from workbench.fingerprint import SPECIAL_ROLES, TURN_TOKENS, TemplateFingerprint
from workbench.gguf_setup import unpack_converter
from workbench.modelfile import modelfile
from workbench.templates import chat_template_jinja


@pytest.fixture(scope="module")
def tokenizer():
    return scenarios.tokenizer()


def metadata_of(tokenizer, template: str) -> GgufMetadata:
    """What the converter writes for this tokenizer: its tokens by id, special ids and the chat template."""
    vocab = tokenizer.get_vocab()
    tokens = [""] * len(vocab)
    for token, i in vocab.items():
        tokens[i] = token
    ids: dict[str, int | None] = {role: getattr(tokenizer, f"{role}_token_id") for role in SPECIAL_ROLES}
    ids.update({t: vocab.get(t) for t in TURN_TOKENS})
    return GgufMetadata(architecture="gemma2", file_type=1, chat_template=template, tokens=tokens, special_ids=ids)


def test_a_gguf_that_matches_the_run_passes(tokenizer) -> None:
    config = RunConfig()
    template = chat_template_jinja(config.data.template, config.data.instruction)
    recorded = TemplateFingerprint.of(tokenizer, template)
    found = check_metadata(metadata_of(tokenizer, template), recorded, tokenizer)
    assert found.digest == recorded.digest


def test_the_fingerprint_catches_a_changed_eos_template_or_vocabulary(tokenizer) -> None:
    config = RunConfig()
    template = chat_template_jinja(config.data.template, config.data.instruction)
    recorded = TemplateFingerprint.of(tokenizer, template)

    wrong_eos = metadata_of(tokenizer, template)
    wrong_eos.special_ids["eos"] = 107
    with pytest.raises(UserError, match=rf"EOS id {tokenizer.eos_token_id} in the run vs 107 in the GGUF file"):
        check_metadata(wrong_eos, recorded, tokenizer)

    other_template = chat_template_jinja("gemma_chat", config.data.instruction)
    with pytest.raises(UserError, match="does not prompt the model as it was trained"):
        check_metadata(metadata_of(tokenizer, other_template), recorded, tokenizer)

    other_vocab = metadata_of(tokenizer, template)
    other_vocab.tokens[50] = "something-else"
    with pytest.raises(UserError, match="the vocabulary differs"):
        check_metadata(other_vocab, recorded, tokenizer)

    shorter = metadata_of(tokenizer, template)
    shorter.tokens = shorter.tokens[:-1]
    with pytest.raises(UserError, match="the vocabulary has"):
        check_metadata(shorter, recorded, tokenizer)


def test_the_modelfile_prompts_as_trained() -> None:
    config = RunConfig()
    text = modelfile("run.q8_0.gguf", config, "<eos>")
    assert "FROM ./run.q8_0.gguf" in text
    assert "### बातचीत:\n{{ .Prompt }}\n\n### सारांश:\n{{ .Response }}" in text
    assert "<bos>" not in text  # llama.cpp adds BOS itself
    assert 'PARAMETER stop "<eos>"' in text
    config.data.template = "gemma_chat"
    chat = modelfile("run.f16.gguf", config, "<eos>")
    assert "<start_of_turn>user\n" in chat and "{{ .Prompt }}<end_of_turn>\n<start_of_turn>model\n" in chat
    assert 'PARAMETER stop "<end_of_turn>"' in chat


def test_export_kinds_and_the_setup_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert save_kinds.resolve_kind("gguf") == "gguf_q8_0"
    assert save_kinds.resolve_kind("gguf_q4_k_m") == "gguf_q4_k_m"
    assert save_kinds.resolve_kind("onnx") is None
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("LLAMA_CPP_DIR", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    reason = save_kinds.unavailable_reason("gguf_f16")
    assert reason is not None and "llama.cpp's converter" in reason and 'pip install -e ".[gguf]"' in reason
    assert "workbench gguf-setup" in reason
    assert save_kinds.unavailable_reason("lora") is None


def _archive(path: Path, files: dict[str, str]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_gguf_setup_unpacks_only_the_converter(tmp_path: Path) -> None:
    root = "llama_cpp_python-0.3.36/vendor/llama.cpp/"
    sdist = _archive(tmp_path / "llama_cpp_python-0.3.36.tar.gz", {
        root + "convert_hf_to_gguf.py": "# converter", root + "conversion/__init__.py": "", root + "conversion/gemma.py": "",
        root + "gguf-py/gguf/__init__.py": "", root + "src/llama.cpp": "// not wanted",
        "llama_cpp_python-0.3.36/llama_cpp/__init__.py": "# not wanted"})
    home = unpack_converter(sdist, tmp_path / "cache" / "llama.cpp")
    found = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file())
    assert found == ["SOURCE", "conversion/__init__.py", "conversion/gemma.py", "convert_hf_to_gguf.py",
                     "gguf-py/gguf/__init__.py"]
    bad = _archive(tmp_path / "other.tar.gz", {"x/README": "no converter"})
    with pytest.raises(UserError, match=r"no vendored llama\.cpp converter"):
        unpack_converter(bad, tmp_path / "cache2" / "llama.cpp")
    assert not (tmp_path / "cache2" / "llama.cpp").exists()


def test_a_gemma2_llama_cpp_would_scale_otherwise_is_refused(tmp_path: Path) -> None:
    import json

    from workbench.engine.gguf import check_llama_cpp_can_run

    def config(**fields: int) -> Path:
        folder = tmp_path / str(len(list(tmp_path.iterdir())))
        folder.mkdir()
        base = {"model_type": "gemma2", "hidden_size": 3584, "num_attention_heads": 16, "head_dim": 256,
                "num_hidden_layers": 42, "query_pre_attn_scalar": 256}
        (folder / "config.json").write_text(json.dumps(base | fields), encoding="utf-8")
        return folder

    check_llama_cpp_can_run(config())  # Gemma-2 9B: the scalar is head_dim
    check_llama_cpp_can_run(config(hidden_size=4608, num_attention_heads=32, head_dim=128, num_hidden_layers=46,
                                   query_pre_attn_scalar=144))  # 27B: hidden / heads
    with pytest.raises(UserError, match=r"1/sqrt\(32\) but this model by 1/sqrt\(256\)"):
        check_llama_cpp_can_run(config(hidden_size=128, num_attention_heads=4, head_dim=32, num_hidden_layers=2))
