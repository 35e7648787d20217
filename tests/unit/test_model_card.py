"""The README card of an export: the run's model, data, LoRA and losses, its evals with the tuned-minus-base
interval, the proof, and how to load it; the same card for the same run (no clock in it)."""

from __future__ import annotations

from pathlib import Path

from tests.ui import scenarios

from workbench import evaluation as ev
from workbench.model_card import model_card
from workbench.requests import Verification
from workbench.runs import resolve_weights

PROOF = Verification(loader="peft AutoPeftModelForCausalLM", prompt_row=3, tokens_compared=32, tokens_equal=32,
                     agreement=1.0, passed=True, detail="the first 32 of 32 greedy tokens are the workbench's")


def _write_eval(run_dir: Path) -> None:
    """An eval of two rows, base and tuned, written as `workbench eval` writes it."""
    folder = run_dir / ev.EVALS_DIR / "final-adapter-2rows-vs-base"
    folder.mkdir(parents=True)
    references = ["राम और सीता कल सुबह बाज़ार जाएँगे।", "मोहन ने परीक्षा पास कर ली।"]
    tuned = ["राम और सीता कल बाज़ार जाएँगे।", "मोहन ने परीक्षा पास की।"]
    base = ["वे बात कर रहे हैं।", "बातचीत।"]
    for row, (ref, t, b) in enumerate(zip(references, tuned, base, strict=True), start=1):
        ev.append_record(folder / ev.ROWS_FILE, ev.RowRecord(
            row=row, input="राम: नमस्ते", reference=ref, prompt_tokens=10,
            outputs={"tuned": ev.Output(text=t, tokens=8, unended=False, seconds=0.1),
                     "base": ev.Output(text=b, tokens=4, unended=False, seconds=0.1)}))
    plan = ev.EvalPlan(run=run_dir.name, weights="final adapter", step=150, heldout="builtin (split heldout)",
                       rows=[1, 2], base=True, decoding=ev.Decoding(max_new_tokens=64, do_sample=False, batch_size=8),
                       template="gemma_chat", instruction="", config_fingerprint="f" * 64)
    report = ev.score_records(ev.read_records(folder / ev.ROWS_FILE))
    ev.write_json_atomic(folder / ev.REPORT_FILE, ev.report_document(plan, report, True, {}))


def test_the_card_tells_what_the_weights_are_and_how_they_were_made(tmp_path: Path) -> None:
    run = scenarios.finished_run(tmp_path / "runs", "card-run")
    source = resolve_weights(run)
    card = model_card(source, "lora", PROOF, ["adapter_model.safetensors", "chat_template.jinja"])
    assert card.startswith("# card-run: LoRA adapter")
    assert "`builtin:tiny-gemma2` (4-bit, max_seq_length 2048)" in card
    assert "| steps | 150 of 150 (completed) |" in card
    assert "| final training loss |" in card and "at step 150 |" in card
    assert "| final eval loss |" in card and "at step 150 |" in card  # an eval every 25 steps in the scenario
    assert "r 16, alpha 16" in card
    assert "AutoPeftModelForCausalLM.from_pretrained" in card
    assert "passed (the first 32 of 32 greedy tokens" in card
    assert "No held-out eval was run" in card
    assert model_card(source, "lora", PROOF, ["adapter_model.safetensors", "chat_template.jinja"]) == card


def test_the_card_lists_the_runs_evals_with_the_interval(tmp_path: Path) -> None:
    run = scenarios.finished_run(tmp_path / "runs", "card-run")
    _write_eval(run.path)
    card = model_card(resolve_weights(run), "merged_16bit", PROOF)
    assert "| final-adapter-2rows-vs-base | tuned | 2 |" in card
    assert "| final-adapter-2rows-vs-base | base | 2 |" in card
    assert "tuned − base rougeL" in card and "tuned − base chrf" in card
    assert "AutoModelForCausalLM.from_pretrained" in card
