"""Experiment costs, measured the way a user meets them: `spintui watch EXPERIMENT` in a real pty, and
the scheduler while it waits on its trainers.

    .venv/bin/python benchmarks/bench_experiment.py                      # all three parts
    .venv/bin/python benchmarks/bench_experiment.py attach live --dir /tmp/exp32   # keep the experiment
    .venv/bin/python benchmarks/bench_experiment.py scheduler

The experiment: 32 finished runs (4 values of gamma x 8 seeds), each written through RunWriter as a
trainer writes it: --points steps (default 100,000), at every step the scalars LossQ and LossPi and
a training episode every --episode-every steps (default 1: 100,000 episodes per run), 10 test
episodes and an epoch summary every 4,000 steps. Writing it takes minutes; --dir keeps it for
later invocations (it is reused when it is there).

attach: time from starting `spintui watch EXP` (120x40 pty) to the first frame that contains
plotted data (braille cells), and the viewer's CPU time until then (less sensitive to other load
on the machine); also the time until the frame shows all 32 runs (while it reads them, the
dashboard shows those read so far). First once with an empty viewer cache (tui/tail_cache.py: every log is parsed),
then the median of --repeats attaches that find what the first one stored; before each of those,
the same for one 10-step run, which is what start-up alone costs. The viewers' cache is a
directory of the benchmark's own.

live: --live of the runs get a producer process each that appends one step (scalars and an
episode) --live-rate times a second, so they are running; the viewer's CPU (user + system of its
process) over --window seconds after --warmup seconds, median of --repeats viewers.

scheduler: `spintui train sac ... --seed 0,1,2,3 --parallel 2 --headless` (tiny real SAC runs that
last longer than the window); the scheduler process's own CPU time (psutil, without its children)
over --window seconds while two trainers run, sampled after they have started; then the scheduler
is stopped with SIGTERM, which stops every run cleanly.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dashboard import PtyViewer, prefill, spawn_producer  # noqa: E402

from spintui.profiles.experiments import create_experiment, experiment_run_dirs, read_experiment  # noqa: E402
from spintui.profiles.run_writer import RunWriter  # noqa: E402

GAMMAS = (0.97, 0.98, 0.99, 0.995)
SEEDS = tuple(range(8))
EPOCH = 4000


# --------------------------------------------------------------------------------------------------
# The experiment on disk


def write_run(args: tuple) -> float:
    """One finished run of `points` steps, as a trainer logs it; returns seconds taken."""
    run_dir, points, episode_every, gamma_index, seed, status = args
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(points)
    run = RunWriter(run_dir, heartbeat=False)
    base = -1200.0 + 150 * gamma_index + 20 * seed
    for step in range(1, points + 1):
        run.scalars({"LossQ": 1.0 / (1 + step / 1e4) + 0.1 * noise[step - 1], "LossPi": -step / 1e3}, step)
        if step % episode_every == 0:
            run.episode(step, base + 1000 * (1 - np.exp(-step / 3e4)) + 60 * noise[step - 1], 200)
        if step % EPOCH == 0:
            test = base + 1000 * (1 - np.exp(-step / 3e4))
            for _ in range(10):
                run.episode(step, test, 200, test=True)
            run.epoch(step // EPOCH, step, {"AverageEpRet": test, "AverageTestEpRet": test, "StepsPerSec": 250.0})
            run.set_progress(step=step, total_steps=points, epoch=step // EPOCH, steps_per_sec=250.0 + seed,
                             test_return=test)
        if step % 20_000 == 0:
            run.flush()
    run.close(status)
    return time.perf_counter() - t0


def build_experiment(root: Path, points: int, episode_every: int) -> Path:
    exp_dir = root / "exp32"
    if (exp_dir / "experiment.json").is_file():
        print(f"  reusing {exp_dir}", flush=True)
        return exp_dir
    points_list = [{"name": f"gamma{g}_s{s}", "env": "Pendulum-v1", "seed": s,
                    "config": {"env": "Pendulum-v1", "seed": s, "gamma": g, "lr": 0.001, "steps": points},
                    "values": {"gamma": g, "seed": s}} for g in GAMMAS for s in SEEDS]
    exp_dir = create_experiment(root, "exp32", algo="sac", varying=["gamma", "seed"],
                                grid={"gamma": list(GAMMAS), "seed": list(SEEDS)}, points=points_list,
                                argv=["bench_experiment.py"], settings={"parallel": 2, "ray": None})
    t0 = time.perf_counter()
    jobs = [(exp_dir / p["name"], points, episode_every, GAMMAS.index(p["config"]["gamma"]), p["seed"], "finished")
            for p in points_list]
    with multiprocessing.Pool(min(len(jobs), os.cpu_count() or 1)) as pool:
        pool.map(write_run, jobs)
    size = sum(f.stat().st_size for d in experiment_run_dirs(exp_dir) for f in d.iterdir() if f.is_file())
    print(f"  wrote {len(jobs)} runs x {points:,} steps ({size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s",
          flush=True)
    return exp_dir


# --------------------------------------------------------------------------------------------------
# Parts


def first_frame(target: Path, runs: int = 1, timeout: float = 120.0) -> tuple[float, float, float]:
    """(seconds, viewer CPU seconds) from starting the viewer to its first frame with data, and
    seconds to the first frame that shows every one of `runs` runs (the header's "(N runs, ")."""
    viewer = PtyViewer(target, marker=f"({runs} runs, ".encode() if runs > 1 else None)
    deadline = time.perf_counter() + timeout
    while (viewer.first_data_at is None or (runs > 1 and viewer.marker_at is None)) \
            and time.perf_counter() < deadline:
        time.sleep(0.01)
    viewer.close()
    if viewer.first_data_at is None or (runs > 1 and viewer.marker_at is None):
        raise RuntimeError(f"no complete frame within {timeout:.0f} s")
    complete = (viewer.marker_at if runs > 1 else viewer.first_data_at) - viewer.started
    return viewer.first_data_at - viewer.started, viewer.first_data_cpu, complete


def bench_attach(args, exp_dir: Path) -> dict:
    """The first attach finds the viewer cache empty (cold); the others find what it stored (warm)."""
    tiny = exp_dir.parent / "tiny"
    if not tiny.is_dir():
        tiny = prefill(exp_dir.parent, "tiny", 10, 10, finished=True)
    runs = len(experiment_run_dirs(exp_dir))
    shutil.rmtree(os.environ["SPINTUI_VIEWER_CACHE"], ignore_errors=True)
    cold = first_frame(exp_dir, runs, timeout=600)
    print(f"  cold attach (empty viewer cache): first frame after {cold[0]:.3f} s (viewer CPU {cold[1]:.3f} s), "
          f"all {runs} runs after {cold[2]:.1f} s", flush=True)
    warm, small = [], []
    for _ in range(args.repeats):
        small.append(first_frame(tiny))
        warm.append(first_frame(exp_dir, runs))
        print(f"  attach: first frame after {warm[-1][0]:.3f} s, viewer CPU {warm[-1][1]:.3f} s, all runs after "
              f"{warm[-1][2]:.3f} s (one 10-step run: {small[-1][0]:.3f} s, CPU {small[-1][1]:.3f} s; "
              f"load {os.getloadavg()[0]:.1f})", flush=True)
        time.sleep(0.5)
    return {"first_frame_s_median": statistics.median(w[0] for w in warm),
            "first_frame_cpu_s_median": statistics.median(w[1] for w in warm),
            "complete_frame_s_median": statistics.median(w[2] for w in warm),
            "tiny_run_first_frame_s_median": statistics.median(s[0] for s in small),
            "tiny_run_first_frame_cpu_s_median": statistics.median(s[1] for s in small),
            "cold_first_frame_s": cold[0], "cold_first_frame_cpu_s": cold[1], "cold_complete_frame_s": cold[2],
            "runs": warm}


def bench_live(args, exp_dir: Path) -> dict:
    live = experiment_run_dirs(exp_dir)[-args.live:]
    seconds = args.repeats * (args.window + args.warmup + 8) + 30
    producers = []
    for run_dir in live:
        # Past every step logged so far (a producer records its step every 100 steps).
        start = (json.loads((run_dir / "run.json").read_text()).get("progress", {}).get("step") or 0) + 100
        producers.append(spawn_producer(run_dir, seconds=seconds, rate=args.live_rate, work_ms=0,
                                        episode_every=1, start_step=start))
    results = []
    try:
        time.sleep(3)  # the producers have claimed their runs (status running)
        for _ in range(args.repeats):
            viewer = PtyViewer(exp_dir)
            time.sleep(args.warmup)
            c0, t0 = viewer.cpu_seconds(), time.perf_counter()
            time.sleep(args.window)
            c1, t1 = viewer.cpu_seconds(), time.perf_counter()
            viewer.close()
            results.append(100 * (c1 - c0) / (t1 - t0))
            print(f"  live ({len(live)} runs growing): viewer cpu {results[-1]:.2f}% of a core", flush=True)
    finally:
        for producer in producers:
            producer.send_signal(signal.SIGTERM)
        for producer in producers:
            producer.wait()
    return {"viewer_cpu_percent_median": statistics.median(results), "live_runs": len(live), "runs": results}


def bench_scheduler(args, root: Path) -> dict:
    runs_dir = root / "sched"
    shutil.rmtree(runs_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "spintui", "train", "sac", "--env", "Pendulum-v1", "--seed", "0,1,2,3",
           "--parallel", "2", "--threads", "1", "--steps", "200000", "--hidden-sizes", "16,16",
           "--num-test-episodes", "1", "--name", "sched", "--runs-dir", str(runs_dir), "--headless"]
    follower = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    exp_dir = runs_dir / "sched"
    try:
        deadline = time.monotonic() + 120
        pid = None
        while time.monotonic() < deadline:
            try:
                data = read_experiment(exp_dir)
                pid = (data.get("scheduler") or {}).get("pid")
                if pid and sum(r.get("status") == "running" for r in data["runs"]) == 2:
                    break
            except Exception:
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError("the scheduler did not get two trainers running in 120 s")
        time.sleep(args.warmup)  # the trainers are past their imports
        proc = psutil.Process(pid)
        c0, t0 = sum(proc.cpu_times()[:2]), time.perf_counter()
        time.sleep(args.window)
        c1, t1 = sum(proc.cpu_times()[:2]), time.perf_counter()
        running = sum(r.get("status") == "running" for r in read_experiment(exp_dir)["runs"])
        percent = 100 * (c1 - c0) / (t1 - t0)
        print(f"  scheduler pid {pid}: {percent:.3f}% of a core over {t1 - t0:.0f} s ({running} trainers running)",
              flush=True)
        os.kill(pid, signal.SIGTERM)
        follower.wait(timeout=180)
    finally:
        if follower.poll() is None:
            os.killpg(follower.pid, signal.SIGKILL)
    return {"scheduler_cpu_percent": percent, "window_s": t1 - t0, "trainers_running": running}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="*", default=["attach", "live", "scheduler"])
    parser.add_argument("--dir", type=Path, help="where the experiment is (reused when there), default a temp dir")
    parser.add_argument("--points", type=int, default=100_000, help="steps per run")
    parser.add_argument("--episode-every", type=int, default=1, help="a training episode every N steps")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured (live, scheduler)")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring")
    parser.add_argument("--live", type=int, default=4, help="runs made live in the live part")
    parser.add_argument("--live-rate", type=float, default=5.0, help="steps per second of each live run")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}", flush=True)
    tmp = None if args.dir else tempfile.TemporaryDirectory()
    root = args.dir or Path(tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    os.environ["SPINTUI_VIEWER_CACHE"] = str(root / "viewer-cache")  # the viewers' parse cache, ours alone
    results = {}
    try:
        exp_dir = build_experiment(root, args.points, args.episode_every) if {"attach", "live"} & set(args.parts) \
            else None
        for part in args.parts:
            print(f"{part}:", flush=True)
            if part == "scheduler":
                results[part] = bench_scheduler(args, root)
            else:
                results[part] = {"attach": bench_attach, "live": bench_live}[part](args, exp_dir)
    finally:
        if tmp is not None:
            tmp.cleanup()
    attach = results.get("attach", {})
    table = [("first frame, 32 runs (median)", attach.get("first_frame_s_median"), "s", 1.5),
             ("  viewer CPU until then", attach.get("first_frame_cpu_s_median"), "s", None),
             ("  every run shown", attach.get("complete_frame_s_median"), "s", None),
             ("first frame, one tiny run (median)", attach.get("tiny_run_first_frame_s_median"), "s", None),
             ("  viewer CPU until then", attach.get("tiny_run_first_frame_cpu_s_median"), "s", None),
             ("first frame, 32 runs, cold cache", attach.get("cold_first_frame_s"), "s", None),
             ("  viewer CPU until then", attach.get("cold_first_frame_cpu_s"), "s", None),
             ("  every run shown", attach.get("cold_complete_frame_s"), "s", None),
             ("viewer CPU, idle-live (median)", results.get("live", {}).get("viewer_cpu_percent_median"), "%", 5.0),
             ("scheduler CPU, 2 trainers running", results.get("scheduler", {}).get("scheduler_cpu_percent"), "%",
              1.0)]
    print(f"\n{'measure':<38} {'value':>9} {'target':>8}")
    for name, value, unit, target in table:
        if value is not None:
            mark = "" if target is None else ("  ok" if value <= target else "  MISSED")
            print(f"{name:<38} {value:>8.3f}{unit} {'' if target is None else f'{target:g}{unit}':>8}{mark}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
