"""Shared fixtures for the pure unit tier: a tiny byte-level BPE tokenizer (no transformers)."""

from __future__ import annotations

from typing import Any

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

SPECIAL_TOKENS = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"]

TRAINING_TEXTS = [
    "माँ: आज शाम को मौसी आ रही हैं, घर साफ़ कर दो।\nरिया: ठीक है माँ, मैं 5 बजे तक कर दूँगी।",
    "मौसी के आने की वजह से रिया शाम 5 बजे तक घर साफ़ करेगी और बाज़ार से मिठाई लाएगी।",
    "नीचे दी गई बातचीत का हिंदी में संक्षिप्त सारांश लिखिए।",
    "### बातचीत:\nअमित: कल meeting कितने बजे है?\nसीमा: सुबह 10 बजे, office में।",
    "### सारांश:\nअमित और सीमा कल सुबह 10 बजे office में meeting करेंगे।",
    "दुकानदार: यह किताब 200 रुपये की है।\nग्राहक: थोड़ा कम कीजिए, 150 दे दूँगा।",
    "The quick brown fox jumps over the lazy dog. Hello world!",
    "पापा: बेटा, परीक्षा की तैयारी कैसी चल रही है?\nरोहन: अच्छी चल रही है, बस गणित थोड़ा कठिन लग रहा है।",
    "दोस्त: चलो रविवार को क्रिकेट खेलने चलते हैं।\nअनु: हाँ, मैं अपना बल्ला लेकर आऊँगी।",
    "डॉक्टर: आपको तीन दिन आराम करना होगा और दवा समय पर लेनी होगी।",
    "शिक्षक: कल सभी छात्र अपनी कॉपी जमा करेंगे।\nछात्र: जी सर, हम सुबह ही जमा कर देंगे।",
    "पड़ोसी: आज बिजली कब आएगी?\nगीता: शाम सात बजे तक आ जानी चाहिए, विभाग ने बताया है।",
    "यात्री: स्टेशन तक कितना किराया लगेगा?\nऑटो वाला: सौ रुपये, रात का समय है।",
]


class HFLikeTokenizer:
    """The slice of a fast Hugging Face tokenizer that `workbench.data` uses, over `tokenizers.Tokenizer`."""

    bos_token = "<bos>"
    eos_token = "<eos>"

    def __init__(self, tok: Tokenizer) -> None:
        self._tok = tok
        self.all_special_tokens = list(SPECIAL_TOKENS)
        self.calls = 0

    def __call__(
        self, texts: Any, add_special_tokens: bool = False, return_offsets_mapping: bool = True
    ) -> dict[str, list[Any]]:
        self.calls += 1
        single = isinstance(texts, str)
        batch = [texts] if single else list(texts)
        encs = self._tok.encode_batch(batch, add_special_tokens=add_special_tokens)
        out: dict[str, list[Any]] = {"input_ids": [list(e.ids) for e in encs]}
        if return_offsets_mapping:
            out["offset_mapping"] = [[tuple(o) for o in e.offsets] for e in encs]
        if single:
            out = {k: v[0] for k, v in out.items()}
        return out

    def token_to_id(self, token: str) -> int:
        tid = self._tok.token_to_id(token)
        assert tid is not None, token
        return tid

    @property
    def bos_token_id(self) -> int:
        return self.token_to_id(self.bos_token)

    @property
    def eos_token_id(self) -> int:
        return self.token_to_id(self.eos_token)


def build_tokenizer() -> HFLikeTokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(TRAINING_TEXTS * 3, trainer=trainer)
    return HFLikeTokenizer(tok)


@pytest.fixture(scope="session")
def hindi_tokenizer() -> HFLikeTokenizer:
    return build_tokenizer()
