"""The README card written into every export folder: what the weights are, how they were made, how well
they summarize, and how to load them, so an export that leaves this machine explains itself.

Everything in it comes from the run's folder (config, events, evals) and the export's proof; nothing
depends on when the export was made, so a run exported twice gives the same card. No ML import.
"""

from __future__ import annotations

from pathlib import Path

from workbench import __version__
from workbench import evaluation as ev
from workbench.config import RunConfig
from workbench.errors import UserError
from workbench.protocol import Done, Eval, Log, TrainStart
from workbench.requests import Verification
from workbench.runs import RunDir, WeightsSource
from workbench.save_kinds import SAVE_TITLES, SaveKind
from workbench.scores import ROUGE_TYPES
from workbench.templates import TEMPLATE_TITLES

CARD_FILE = "README.md"


def model_card(source: WeightsSource, kind: SaveKind, verification: Verification | None,
               files: list[str] | None = None) -> str:
    """The card, as Markdown: a recipe of sections, each from one record of the run."""
    config, run = source.config, source.run
    sections = [
        _title(source, kind),
        _training(config, run, source),
        _evaluation(run),
        _verification(verification),
        _usage(kind, files or []),
        f"Made by workbench {__version__}.\n",
    ]
    return "\n".join(s for s in sections if s)


def write_card(folder: Path, source: WeightsSource, kind: SaveKind, verification: Verification | None) -> Path:
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    path = folder / CARD_FILE
    path.write_text(model_card(source, kind, verification, files), encoding="utf-8")
    return path


def _title(source: WeightsSource, kind: SaveKind) -> str:
    weights = source.checkpoint or "the final adapter"
    step = f" at step {source.step}" if source.step is not None else ""
    return (f"# {source.run.name}: {SAVE_TITLES[kind]}\n\n"
            f"`{source.config.model.name}` fine-tuned with LoRA by workbench; these weights are {weights}"
            f"{step} of run `{source.run.name}`.\n")


def _training(config: RunConfig, run: RunDir, source: WeightsSource) -> str:
    events = list(run.iter_events())
    start = next((e for e in reversed(events) if isinstance(e, TrainStart)), None)
    logs = [e for e in events if isinstance(e, Log) and e.loss is not None]
    evals = [e for e in events if isinstance(e, Eval)]
    done = next((e for e in reversed(events) if isinstance(e, Done)), None)
    t, lora, d = config.training, config.lora, config.data
    rows = [
        ("base model", f"`{config.model.name}` ({'4-bit' if config.model.load_in_4bit else 'not quantized'}, "
                       f"max_seq_length {config.model.max_seq_length})"),
        ("data", f"`{d.source}` (split {d.split}; {d.input_column} → {d.output_column})"
                 + (f", {start.train_rows} training rows, {start.eval_rows} eval rows" if start else "")),
        ("data fingerprint", f"`{start.data_fingerprint[:16]}`" if start and start.data_fingerprint else "n/a"),
        ("prompt template", TEMPLATE_TITLES[d.template]),
        ("LoRA", f"r {lora.r}, alpha {lora.alpha}, dropout {lora.dropout}, on {', '.join(lora.target_modules)}"),
        ("optimisation", f"learning rate {t.learning_rate:g} ({t.lr_scheduler_type}), {t.optim}, "
                         f"effective batch {start.effective_batch if start else '?'}, seed {t.seed}"),
        ("steps", f"{done.step} of {done.total_steps} ({done.status})" if done else "n/a"),
        ("final training loss", f"{logs[-1].loss:.4f} at step {logs[-1].step}" if logs else "n/a"),
        ("final eval loss", f"{evals[-1].eval_loss:.4f} at step {evals[-1].step}" if evals else "n/a"),
    ]
    table = "\n".join(f"| {name} | {value} |" for name, value in rows)
    return f"## Training\n\n| | |\n|---|---|\n{table}\n\nThe whole config is in `workbench-config.toml`.\n"


def _evaluation(run: RunDir) -> str:
    """Each eval of the run (`workbench eval`, the Eval pane): ROUGE and chrF++ of the tuned model, and of
    the base model with the tuned-minus-base interval where it was made."""
    lines = []
    for folder in sorted(ev.list_evals(run.path), key=lambda p: p.name):
        try:
            loaded = ev.load_eval(folder)
        except UserError:
            continue
        for model, summary in loaded.report.models.items():
            rouge = " / ".join(f"{100 * summary.rouge_f1[m]:.2f}" for m in ROUGE_TYPES)
            lines.append(f"| {folder.name} | {model} | {summary.rows} | {rouge} | {summary.chrf_corpus:.2f} |")
        for diff in loaded.report.differences:
            if diff.metric in ("rougeL", "chrf"):
                verdict = "a real difference" if diff.significant else "within noise"
                lines.append(f"| {folder.name} | tuned − base {diff.metric} | | {diff.mean:+.2f} "
                             f"[{diff.low:+.2f}, {diff.high:+.2f}] | {verdict} |")
    if not lines:
        return ("## Evaluation\n\nNo held-out eval was run for this run (`workbench eval --run RUN --base`, or "
                "the Eval pane).\n")
    header = ("| eval | model | rows | ROUGE-1 / 2 / L F1 | chrF++ |\n|---|---|---|---|---|\n")
    return ("## Evaluation\n\nHeld-out summaries scored with a Devanagari-correct ROUGE tokenizer and chrF++ "
            "(intervals: paired bootstrap, 95%).\n\n" + header + "\n".join(lines) + "\n")


def _verification(verification: Verification | None) -> str:
    if verification is None:
        return ""
    verdict = "passed" if verification.passed else "FAILED"
    return (f"## Proof\n\nBefore this folder was written it was reloaded ({verification.loader}) and its greedy "
            f"answer to a held-out prompt compared with the workbench's own: {verdict} ({verification.detail}).\n")


USAGE: dict[str, str] = {
    "lora": ("```python\nfrom peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer\n\n"
             "model = AutoPeftModelForCausalLM.from_pretrained(\"THIS_FOLDER\")\n"
             "tokenizer = AutoTokenizer.from_pretrained(\"THIS_FOLDER\")\n```\n"),
    "merged_16bit": ("```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                     "model = AutoModelForCausalLM.from_pretrained(\"THIS_FOLDER\", dtype=\"auto\")\n"
                     "tokenizer = AutoTokenizer.from_pretrained(\"THIS_FOLDER\")\n```\n"),
}
GGUF_USAGE = ("```sh\nllama-cli -m THIS_FOLDER/{file} --jinja\ncd THIS_FOLDER && ollama create my-model -f Modelfile\n```\n"
              "\nThe `Modelfile` holds the run's prompt format and stop tokens.\n")


def _usage(kind: SaveKind, files: list[str]) -> str:
    if kind in USAGE:
        how = USAGE[kind]
    else:
        gguf_file = next((f for f in files if f.endswith(".gguf")), "MODEL.gguf")
        how = GGUF_USAGE.format(file=gguf_file)
    return (f"## Use\n\n{how}\nPrompts must be rendered with the chat template saved here "
            "(`chat_template.jinja`): it is the one the model was trained on (`fingerprint.json` records it).\n"
            + (f"\nFiles: {', '.join(f'`{f}`' for f in files)}.\n" if files else ""))
