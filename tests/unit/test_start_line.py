"""The Train pane's line for a run's start says how the samples were laid out and which attention runs."""

from __future__ import annotations

from workbench.formatting import start_line
from workbench.protocol import TrainStart

BASE = dict(total_steps=40, run_dir="runs/r", train_rows=194, eval_rows=22, effective_batch=8,
            trainable_params=65536, total_params=873600)


def test_a_padded_run_from_before_the_attention_was_recorded() -> None:
    assert start_line(TrainStart(**BASE)) == ("Training 194 rows (eval 22), effective batch 8, 65,536 trainable "
                                              "of 873,600 parameters.")


def test_a_packed_run_names_its_rows_and_its_attention() -> None:
    line = start_line(TrainStart(**BASE, packed_rows=47, attention="flex", start_step=20))
    assert line == ("Training 194 samples packed into 47 rows (eval 22), effective batch 8, 65,536 trainable of "
                    "873,600 parameters. Attention: flex. Resumed at step 20 of 40.")


def test_a_run_on_ranks_says_how_many() -> None:
    line = start_line(TrainStart(**{**BASE, "effective_batch": 16}, ranks=2))
    assert line.startswith("Training 194 rows (eval 22) on 2 ranks, effective batch 16,")
