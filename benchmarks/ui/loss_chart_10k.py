"""A 10,000-step run keeps the loss chart responsive: ingest, redraw and key latency at 10k points.

    /work/venv/bin/python benchmarks/ui/loss_chart_10k.py
    /work/venv/bin/python benchmarks/ui/loss_chart_10k.py --points 10000 --presses 200 --feed-rate 10

Method
------
The full app, `WorkbenchApp(config_path=configs/demo.toml, start_engine=False)` (no engine: the points are
synthetic), runs under Textual's Pilot (`app.run_test(size=(160, 50))`, headless), on the Train pane.
The app is the probe subclass of benchmarks/ui/_common.py, which timestamps every frame (see there).
Synthetic points: a noisy decaying loss, one `workbench.protocol.Log` per step with every field the
engine sends (lr, grad norm, epoch, tokens, tokens/s, elapsed, ETA); the Log objects are built before
any timing.

(a) ingest: a TrainStart, then all points through `TrainPane.handle_event(log)` -- the function the
    engine's events reach -- in one synchronous loop, each call timed with time.perf_counter() (so a cost
    that grows with the history shows as a growing per-call time: the first and last 1,000 are
    compared). Then the time until the next frame that shows them (the chart's 4 Hz timer replots).
    Also (a2): `TrainPane.replay(run_dir)` of a run folder whose events.jsonl holds the same 10,000
    points (what opening a past run or re-attaching does).
(b) At 100, 1,000 and 10,000 points (the chart's history set directly), median of `--repeats` (20):
    `LossChart.replot()` (it only marks the history changed); `LossChart.draw_now()`, the whole drawing
    (downsample, plotext build, ANSI parse) on the calling thread; and replot() -> the first frame that
    shows the new drawing, which the chart makes in its background thread (wall time, plus the UI
    thread's CPU time in that window). The number of points handed to plotext per series is recorded
    (drawing is downsampled; history is not), and len(chart.steps) == points is checked.
--what-if-gc-freeze (off by default) calls gc.freeze() before (c). --what-if-footer-fix (off by default) drops the Footer's stale watchers after each recompose, to measure
what a fix of the Footer leak would give (see _common.count_footer_recomposes).
(c) key-to-render latency with 10,000 points in the chart: keys "2" (Data) / "3" (Train) in turn,
    `--presses` presses, measured as in key_latency.py (time from just before `pilot.press` to the
    first frame on which the selected pane is on screen). Twice: (c1) static history; (c2) while new
    points keep arriving at `--feed-rate` per second (so the chart is dirty and replots at 4 Hz).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    DEMO_CONFIG,
    ROOT,
    GcPauses,
    add_inject_argument,
    add_what_if_arguments,
    count_footer_recomposes,
    cpu_busy,
    footer_watchers,
    latency_breakdown,
    make_probe_app,
    measure_key_latency,
    ms,
    print_table,
    set_offline_env,
    summarize,
    write_results,
)


def synthetic_logs(n: int, start: int = 1, total: int | None = None, seed: int = 0) -> list[Any]:
    from workbench.protocol import Log

    rng = random.Random(seed)
    total = total or n
    out = []
    t0 = time.time()
    for step in range(start, start + n):
        loss = 0.6 + 2.4 * math.exp(-step / 1500) + rng.gauss(0, 0.08)
        out.append(Log(step=step, total_steps=total, loss=loss, learning_rate=3e-3 * (1 - step / (total + 1)),
                       grad_norm=abs(rng.gauss(1.0, 0.3)), epoch=step / 2000, tokens=step * 900,
                       tokens_per_s=9000.0 + rng.gauss(0, 200), mfu=None, elapsed_s=step * 0.1,
                       eta_s=(total - step) * 0.1, t=t0 + step * 0.1))
    return out


async def next_frame(app: Any, timeout: float = 10.0) -> float:
    return (await asyncio.wait_for(app.wait_frame(lambda: True), timeout))[0]


async def frame_after(app: Any, t: float, timeout: float = 10.0) -> float:
    """Time of the first frame drawn after perf_counter time t (waits for it)."""
    deadline = time.monotonic() + timeout
    while True:
        later = [f for f in app.frame_times if f > t]
        if later:
            return later[0]
        if time.monotonic() > deadline:
            raise TimeoutError("no frame")
        await asyncio.sleep(0.002)


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    set_offline_env()
    from workbench.protocol import TrainStart
    from workbench.runs import RunDir
    from workbench.ui.app import WorkbenchApp
    from workbench.ui.panes.train_pane import TrainPane
    from workbench.ui.widgets.loss_chart import LossChart

    n = args.points
    logs = synthetic_logs(n)
    start = TrainStart(total_steps=n, run_dir=str(workdir / "runs" / "synthetic"), train_rows=40000, eval_rows=400,
                       effective_batch=4, trainable_params=1_000_000, total_params=9_000_000_000)
    App = make_probe_app(WorkbenchApp)
    app = App(config_path=DEMO_CONFIG, start_engine=False)
    result: dict[str, Any] = {"points": n, "inject": args.inject, "what_if": {"footer_fix": args.what_if_footer_fix,
                                                         "gc_freeze": args.what_if_gc_freeze}}
    async with app.run_test(size=(160, 50)) as pilot:
        await app.panes_mounted()
        await pilot.press("3")
        await asyncio.sleep(0.5)
        train = app.query_one(TrainPane)
        chart = app.query_one(LossChart)
        result["chart_size"] = list(chart.size)

        # When each replot happened (the chart's 4 Hz timer calls it while there are new points).
        replot_times: list[float] = []
        orig_replot = chart.replot

        def timed_replot() -> None:
            orig_replot()
            replot_times.append(time.perf_counter())

        chart.replot = timed_replot  # type: ignore[method-assign]

        def drawn_per_series() -> int | None:
            return chart.drawing.points_per_series if chart.drawing else None

        def showing_current() -> bool:
            return chart.drawing is not None and chart.drawing.version == chart._version

        # (a) ingest ------------------------------------------------------------------------------
        train.handle_event(start)
        replots_before = len(replot_times)
        per_call: list[float] = []
        pc = time.perf_counter
        t0 = pc()
        for log in logs:
            t = pc()
            train.handle_event(log)
            per_call.append(pc() - t)
        t1 = pc()
        t_frame = await frame_after(app, t1)
        # the chart's 4 Hz timer replots (it is dirty): wait for that replot, then for the first frame that
        # shows its drawing (made in the chart's background thread)
        deadline = time.monotonic() + 5
        while len(replot_times) <= replots_before and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        t_replotted = (await asyncio.wait_for(app.wait_frame(showing_current), 10))[0]
        k = min(1000, n // 2)
        result["ingest"] = {
            "total_s": t1 - t0,
            "per_point": summarize(per_call),
            "first_1000_mean_s": statistics.fmean(per_call[:k]),
            "last_1000_mean_s": statistics.fmean(per_call[-k:]),
            "to_next_frame_s": t_frame - t1,
            "to_frame_with_replot_s": t_replotted - t1,
            "points_kept": len(chart.steps),
            "all_points_kept": len(chart.steps) == n,
            "points_drawn_per_series": drawn_per_series(),
            "log_lines_kept": len(app.query_one("#train-log").lines),
        }
        print(f"(a) ingest {n} points: {t1 - t0:.2f} s ({statistics.fmean(per_call) * 1e3:.2f} ms/point); "
              f"kept {len(chart.steps)}; drawn per series {drawn_per_series()}", flush=True)

        # (a2) replay of a 10k-step run folder ---------------------------------------------------------
        run = RunDir.create(workdir / "runs", "synthetic")
        run.append(start)
        for log in logs:
            run.append(log)
        # replay() reads and folds the file in a worker thread, then shows the result on the UI thread
        # (`_show_history`): time both the whole (call -> shown) and the UI thread's part.
        count = len(logs) + 1
        shown: dict[str, float] = {}
        done = asyncio.Event()
        show = train._show_history

        def timed_show(*args, **kwargs):
            t = pc()
            show(*args, **kwargs)
            shown["ui_s"] = pc() - t

        train._show_history = timed_show
        t0 = pc()
        train.replay(run.path, then=lambda: (shown.setdefault("t", pc()), done.set()))
        await asyncio.wait_for(done.wait(), 120)
        t1 = shown["t"]
        del train._show_history
        t_frame = await frame_after(app, t1)
        result["replay"] = {"events": count, "total_s": t1 - t0, "ui_thread_s": shown.get("ui_s"),
                            "to_next_frame_s": t_frame - t1, "points_kept": len(chart.steps)}
        print(f"(a2) replay of a {count}-event run: {t1 - t0:.2f} s, UI thread {shown.get('ui_s', 0):.3f} s",
              flush=True)

        # (b) replot / drawing at 100, 1k, 10k --------------------------------------------------------
        full_steps, full_losses = list(chart.steps), list(chart.losses)
        result["replot"] = {}
        for size in (100, 1000, n):
            chart.steps, chart.losses = full_steps[:size], full_losses[:size]
            chart.replot()
            await asyncio.wait_for(app.wait_frame(showing_current), 10)
            rep, ren, frame, ui = [], [], [], []
            for _ in range(3):  # warm-up (plotext / Textual caches), not counted
                chart.draw_now()
            for _ in range(args.repeats):
                t = pc()
                chart.replot()
                rep.append(pc() - t)
                t = pc()
                chart.draw_now()  # the whole drawing (downsample, plotext build, ANSI parse) on this thread
                ren.append(pc() - t)
            await asyncio.wait_for(app.wait_frame(showing_current), 10)
            for _ in range(args.repeats):
                await asyncio.sleep(0.1)
                fut = app.wait_frame(showing_current)
                t, c = pc(), time.thread_time()
                chart.replot()  # drawn in the chart's thread; the frame comes when it is ready
                t_frame, c_frame = await asyncio.wait_for(fut, 10)
                frame.append(t_frame - t)
                ui.append(c_frame - c)
            result["replot"][str(size)] = {
                "replot_s": summarize(rep), "draw_s": summarize(ren), "replot_to_frame_s": summarize(frame),
                "replot_to_frame_ui_thread_cpu_s": summarize(ui),
                "points_drawn_per_series": drawn_per_series(), "points_kept": len(chart.steps)}
            print(f"(b) {size:>6} points: replot {statistics.median(rep) * 1e3:.2f} ms, drawing "
                  f"{statistics.median(ren) * 1e3:.2f} ms, replot->frame {statistics.median(frame) * 1e3:.1f} ms "
                  f"(UI thread CPU {statistics.median(ui) * 1e3:.1f} ms), drawn per series {drawn_per_series()}",
                  flush=True)
        chart.steps, chart.losses = full_steps, full_losses
        chart.replot()
        result["all_points_kept"] = len(chart.steps) == n
        # Drop the benchmark's own 10k Log objects, so the GC heap below is the app's.
        del logs, full_steps, full_losses, run
        import gc

        gc.collect()

        # (c1) key latency, static 10k --------------------------------------------------------------
        keys = {"2": "data-pane", "3": "train-pane"}
        await frame_after(app, pc())
        recomposes = count_footer_recomposes(app, prune_watchers=args.what_if_footer_fix)
        if args.what_if_gc_freeze:
            gc.collect()
            gc.freeze()
        result["footer_before"] = footer_watchers(app)
        gcp = GcPauses().__enter__()
        c1 = await measure_key_latency(app, pilot, keys, args.presses, (0.02, 0.08), gc_pauses=gcp, inject=args.inject)
        result["footer_after_c1"] = footer_watchers(app)
        print(f"(c1) {args.presses} presses with {len(chart.steps)} points (static)", flush=True)

        # (c2) key latency while points keep arriving ---------------------------------------------------
        stop = asyncio.Event()
        fed = [0]

        async def feed() -> None:
            period = 1.0 / args.feed_rate
            nxt = time.monotonic()
            step = n
            while not stop.is_set():
                step += 1
                train.handle_event(synthetic_logs(1, start=step, total=n * 2, seed=step)[0])
                fed[0] += 1
                nxt += period
                await asyncio.sleep(max(0.0, nxt - time.monotonic()))

        feeder = asyncio.create_task(feed())
        await asyncio.sleep(1.0)
        c2 = await measure_key_latency(app, pilot, keys, args.presses, (0.02, 0.08), seed=2, gc_pauses=gcp,
                                       inject=args.inject)
        stop.set()
        await feeder
        gcp.__exit__()
        result["footer_after_c2"] = footer_watchers(app)
        result["footer_recomposes"] = recomposes[0]
        result["gc_during_c1_c2"] = gcp.summary()
        print(f"(c2) {args.presses} presses while feeding {args.feed_rate}/s ({fed[0]} points fed, chart now "
              f"{len(chart.steps)})", flush=True)
        result["key_latency_static"] = {"samples": c1}
        result["key_latency_live"] = {"samples": c2, "feed_rate_per_s": args.feed_rate, "points_fed": fed[0],
                                      "points_at_end": len(chart.steps)}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--presses", type=int, default=200)
    ap.add_argument("--feed-rate", type=float, default=10.0, help="points per second during (c2)")
    ap.add_argument("--name", default="loss_chart_10k", help="results file name")
    add_what_if_arguments(ap)
    add_inject_argument(ap)
    args = ap.parse_args()
    busy = cpu_busy(1.0)
    with tempfile.TemporaryDirectory(prefix="wb-chart-10k-") as tmp:
        result = asyncio.run(run(args, Path(tmp)))
    result["cpu_busy_before"] = busy
    for key in ("key_latency_static", "key_latency_live"):
        s = result[key]["samples"]
        result[key]["stats"] = {
            **latency_breakdown(s),
            "latency": summarize([x["latency_s"] for x in s if not math.isnan(x["latency_s"])]),
            "cpu": summarize([x["cpu_s"] for x in s if not math.isnan(x["cpu_s"])]),
            "to Data": summarize([x["latency_s"] for x in s if x["key"] == "2" and not math.isnan(x["latency_s"])]),
            "to Train": summarize([x["latency_s"] for x in s if x["key"] == "3" and not math.isnan(x["latency_s"])]),
        }
    path = write_results(args.name, result)

    ing = result["ingest"]
    rows = [
        ["(a) ingest 10k via handle_event: total", f"{ing['total_s']:.3f} s", ""],
        ["    per point p50 / p99", ms(ing["per_point"]["p50"]), ms(ing["per_point"]["p99"])],
        ["    mean per point: first / last 1,000", ms(ing["first_1000_mean_s"]), ms(ing["last_1000_mean_s"])],
        ["    -> frame with the replot", ms(ing["to_frame_with_replot_s"]), ""],
        ["(a2) replay() of a 10k-step events.jsonl: shown / UI thread", f"{result['replay']['total_s']:.3f} s",
         f"{result['replay']['ui_thread_s']:.3f} s"],
    ]
    for size, r in result["replot"].items():
        rows.append([f"(b) {int(size):>6} pts: replot() / drawing median", ms(r["replot_s"]["p50"]),
                     ms(r["draw_s"]["p50"])])
        rows.append(["           replot() -> frame median / p95", ms(r["replot_to_frame_s"]["p50"]),
                     ms(r["replot_to_frame_s"]["p95"])])
        rows.append(["           UI thread CPU in that window p50 / p95",
                     ms(r["replot_to_frame_ui_thread_cpu_s"]["p50"]), ms(r["replot_to_frame_ui_thread_cpu_s"]["p95"])])
    for key, label in (("key_latency_static", "(c1) key->render, 10k static"),
                       ("key_latency_live", f"(c2) key->render, 10k + {args.feed_rate:g}/s live")):
        st = result[key]["stats"]["latency"]
        rows.append([f"{label}: p50 / p95", ms(st["p50"]), ms(st["p95"])])
        rows.append(["     p99 / max", ms(st["p99"]), ms(st["max"])])
        cpu = result[key]["stats"]["cpu"]
        rows.append(["     UI thread CPU per press p50 / p95", ms(cpu["p50"]), ms(cpu["p95"])])
        for sub in ("with a full GC", "without a full GC"):
            st = result[key]["stats"].get(sub, {"n": 0})
            rows.append([f"     presses {sub} (n={st['n']}): p50 / p95", ms(st.get("p50")), ms(st.get("p95"))])
    what_if = "".join(f" + {k} (what-if)" for k, v in result["what_if"].items() if v)
    print_table(f"loss chart with {args.points} points (160x50, {os.cpu_count()} CPUs){what_if}", ["", "value", ""], rows)
    drawn = {k: v["points_drawn_per_series"] for k, v in result["replot"].items()}
    print(f"all points kept: {result['all_points_kept']} (len(chart.steps) == {args.points}); points drawn per "
          f"series (raw, smoothed): {drawn}")
    fb, f1, f2 = result["footer_before"], result["footer_after_c1"], result["footer_after_c2"]
    g2 = result["gc_during_c1_c2"]["gen2"]
    print(f"Footer recomposes during (c1)+(c2): {result['footer_recomposes']} for {2 * args.presses} presses; "
          f"Footer 'compact' watchers {fb.get('footer_compact_watchers')} -> {f1.get('footer_compact_watchers')} -> "
          f"{f2.get('footer_compact_watchers')} (FooterKeys in the footer: {f2.get('footer_keys_live')}); objects "
          f"tracked by the GC {fb.get('gc_tracked_objects'):,} -> {f2.get('gc_tracked_objects'):,}; full GCs "
          f"{g2['count']}, longest {g2['max_s'] * 1000:.0f} ms")
    print(f"raw numbers: {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
