"""Run by tests/engine/test_packing.py in a process of its own (unsloth patches transformers for the whole
process): the engine's real plan and trainer for the same samples, packed and padded, on the tiny model.

Prints one JSON object: per-sample losses both ways, the trained-token counts, what the collator made of
a packed row, and whether the installed unsloth's patch target is the one flex_attention patches."""

from __future__ import annotations

import itertools
import json
import sys
import threading

from workbench.engine import boot

boot.boot()

import torch  # noqa: E402

from workbench.config import load_config  # noqa: E402
from workbench.engine import flex_attention as fa  # noqa: E402
from workbench.engine import train  # noqa: E402
from workbench.engine.model import load_base  # noqa: E402
from workbench.runs import RunDir  # noqa: E402


def per_sample_losses(model, batch):
    """Mean loss of each sample in the batch, split by the positions (which restart at every sample)."""
    device = next(model.parameters()).device
    batch = {k: v.to(device) if hasattr(v, "to") else v for k, v in batch.items()}
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()
    labels = batch["labels"]
    token_loss = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], reduction="none",
                                                   ignore_index=-100)
    trained = labels[:, 1:] != -100
    positions = batch.get("position_ids")
    out = []
    for r in range(labels.shape[0]):
        starts = [0] if positions is None else (positions[r] == 0).nonzero().flatten().tolist()
        real = int(batch["attention_mask"][r].sum())
        bounds = [s for s in starts if s < real] + [real]
        for a, b in itertools.pairwise(bounds):
            t = trained[r, a:b - 1]
            out.append((float(token_loss[r, a:b - 1][t].sum()), int(t.sum())))
    return out


def trainer_for(config, run, loaded):
    session = train.Session(config, run, lambda e: None, threading.Event(), None)
    prepared = train.setup_data(session, loaded)
    plan = train.plan_run(session, loaded, prepared, resume=False)
    return train.build_trainer(session, loaded, plan), plan


def main(config_path: str, runs: str, max_seq_length: int = 512, max_rows: int = 12) -> None:
    config = load_config(config_path)
    config.data.max_rows = max_rows
    config.model.max_seq_length = max_seq_length
    config.output.runs_dir = runs
    loaded = load_base(config, lambda m: None)
    results = {}
    for packed in (False, True):
        config.data.packing = packed
        config.output.run_name = "packed" if packed else "padded"
        run = RunDir.create(runs, config.output.run_name)
        trainer, plan = trainer_for(config, run, loaded)
        loaded.model.train()
        rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
        batch = trainer.data_collator(rows)
        losses = per_sample_losses(loaded.model, batch)
        results["packed" if packed else "padded"] = {
            "losses": sorted(round(loss / n, 6) for loss, n in losses),
            "trained_tokens": sum(n for _, n in losses),
            "label_tokens": int((batch["labels"] != -100).sum()),
            "rows": len(rows),
            "samples": len(losses),
            "attention": plan.attention.describe(),
            "flex_calls": fa.state_of(loaded.model).calls,
        }
        if packed:
            results["positions_row0"] = batch["position_ids"][0].tolist()
            results["seq_lengths_row0"] = rows[0]["seq_lengths"]
    state = fa.state_of(loaded.model)
    calls = state.calls
    choice = fa.install(loaded.model, False, False)  # a later run of the same model with model.attention = default
    per_sample_losses(loaded.model, batch)
    results["default"] = {"path": choice.path, "packing_ok": choice.packing_ok, "flex_calls_after": state.calls - calls,
                          "attn_implementation": loaded.model.config._attn_implementation}
    import unsloth.models.gemma2 as unsloth_gemma2

    original = unsloth_gemma2.slow_attention_softcapping
    results["unsloth_patch"] = fa.patch_unsloth()
    unsloth_gemma2.slow_attention_softcapping = original
    print("PROBE " + json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:5]))
