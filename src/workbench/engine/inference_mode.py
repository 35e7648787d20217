"""The model being trained, in unsloth's inference mode for a moment and then exactly as it was: its modes,
the KV-cache settings and every random generator, so training goes on as if it had not paused (a probe, a
generation eval or a quick eval must not change the losses that follow). Imported only in the engine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def paused_for_inference(model: Any) -> Iterator[None]:
    """The model in unsloth's inference mode for a moment mid-training, then exactly as it was: its
    modes, the KV-cache settings, and every random generator, so training goes on as if it had not
    paused (a probe must not change the losses that follow)."""
    import random

    import numpy as np
    import torch
    from unsloth import FastLanguageModel

    from workbench.engine import layer_stream
    from workbench.engine.generate import prepare_for_inference

    states = (random.getstate(), np.random.get_state(), torch.get_rng_state(),
              torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None)
    configs = [m.config for m in model.modules() if hasattr(m, "config") and hasattr(m.config, "use_cache")]
    use_cache = [(c, c.use_cache) for c in {id(c): c for c in configs}.values()]
    with layer_stream.resident(model):  # unsloth's decoding reads the weights without the layers' hooks
        prepare_for_inference(model)
        try:
            yield
        finally:
            FastLanguageModel.for_training(model)
            for config, value in use_cache:
                config.use_cache = value
            random.setstate(states[0])
            np.random.set_state(states[1])
            torch.set_rng_state(states[2])
            if states[3] is not None:
                torch.cuda.set_rng_state_all(states[3])
