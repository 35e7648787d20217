"""Run llama.cpp's `convert_hf_to_gguf.py` (from `workbench gguf-setup`) on a merged model, as a script:

    python gguf_convert.py LLAMA_DIR MODEL_DIR [converter arguments...]

Gemma-2's converter reads the vocabulary from sentencepiece's `tokenizer.model`, which every real Gemma-2
checkpoint has. The tiny model the demo and the tests train has a byte-level BPE `tokenizer.json` and no
`tokenizer.model`; for such a model the vocabulary is written the GPT-2 BPE way (the token strings and
merges of tokenizer.json, ids unchanged) with llama.cpp's default pre-tokenizer, since its own split rule
is not one llama.cpp knows. Token ids, and so the proof (which feeds ids), are exact either way; text that
llama.cpp tokenizes itself may split differently for the tiny model only.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path


def main() -> None:
    llama_dir, model_dir = Path(sys.argv[1]), Path(sys.argv[2])
    script = llama_dir / "convert_hf_to_gguf.py"
    sys.path[:0] = [str(llama_dir), str(llama_dir / "gguf-py")]
    if not (model_dir / "tokenizer.model").exists():
        from conversion import base, gemma

        def bpe_vocab(self: object) -> None:
            self._set_vocab_gpt2()  # type: ignore[attr-defined]
            self.gguf_writer.add_add_space_prefix(False)  # type: ignore[attr-defined]

        gemma.Gemma2Model.set_vocab = bpe_vocab
        base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "default"
    sys.argv = [str(script), *sys.argv[2:]]
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
