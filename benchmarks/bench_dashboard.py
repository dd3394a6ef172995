"""Dashboard costs, measured the way a user meets them: `spintui watch` in a real pty.

    .venv/bin/python benchmarks/bench_dashboard.py            # all three parts
    .venv/bin/python benchmarks/bench_dashboard.py live       # CPU and bytes/s on a live run
    .venv/bin/python benchmarks/bench_dashboard.py attach     # first frame on a finished 1M-record run
    .venv/bin/python benchmarks/bench_dashboard.py viewers    # trainer steps/s with 0 vs 4 viewers

live: a run prefilled with 100,000 points in each of four series (episode returns, LossQ, LossPi,
StepsPerSec), all four still growing (a producer process appends 100 steps/s with one episode
per step); the viewer runs at 120x40 with its default refresh (1 s) and draws Return (raw,
smoothed, test), Loss, steps/s and the System/GPU panel. CPU is the viewer process's user+system
time over the window; bytes are everything it wrote to the pty (read from the master side).

attach: a finished run of 1,000,000 scalar records (four series of 250,000) plus 10,000 episodes;
time from starting `spintui watch` to the first frame that contains plotted data (braille cells).

viewers: a synthetic trainer loop (fixed numpy work per step, one scalar record set per step and an
episode every 200 steps through RunWriter, as the real trainers log) runs for a fixed time with no
viewer and with four `spintui watch` viewers attached, alternating; medians of the repeats.
Real trainers (algos/sac.py) were not on main when this was written, hence the synthetic loop.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import select
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
from pathlib import Path

import numpy as np
import psutil

from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import create_run

BRAILLE = (b"\xe2\xa0", b"\xe2\xa1", b"\xe2\xa2", b"\xe2\xa3")


# --------------------------------------------------------------------------------------------------
# Viewer in a pty


def user_environment() -> dict:
    """This environment as a user's shell has it: Python caching bytecode (some CI images set
    PYTHONDONTWRITEBYTECODE, which makes every start compile the package's sources again)."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


class PtyViewer:
    """`spintui watch RUN` on its own pty; a thread drains and counts what it writes."""

    def __init__(self, run_dir: Path, rows: int = 40, cols: int = 120, env: dict | None = None,
                 marker: bytes | None = None):
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "spintui.tui.cli", "watch", str(run_dir)],
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
            env={**user_environment(), "TERM": "xterm-256color", "COLORTERM": "", **(env or {})},
            preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.master = master
        self.bytes = 0
        self.first_data_at: float | None = None
        self.first_data_cpu: float | None = None
        self.marker = marker  # when given: marker_at is when the output first contained it
        self.marker_at: float | None = None
        self._tail = b""
        self._window = b""
        self._stop = False
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            self.bytes += len(chunk)
            if self.marker is not None and self.marker_at is None:
                self._window = self._window[-len(self.marker):] + chunk
                if self.marker in self._window:
                    self.marker_at = time.perf_counter()
            if self.first_data_at is None:
                window = self._tail + chunk
                if any(m in window for m in BRAILLE):
                    self.first_data_at = time.perf_counter()
                    try:
                        self.first_data_cpu = self.cpu_seconds()
                    except psutil.Error:
                        self.first_data_cpu = None
                self._tail = chunk[-4:]

    def wait_first_data(self, timeout: float) -> bool:
        """Whether a frame with data arrived within `timeout` seconds of now."""
        deadline = time.perf_counter() + timeout
        while self.first_data_at is None and time.perf_counter() < deadline:
            time.sleep(0.01)
        return self.first_data_at is not None

    def cpu_seconds(self) -> float:
        t = psutil.Process(self.proc.pid).cpu_times()
        return t.user + t.system

    def close(self) -> None:
        try:
            os.write(self.master, b"q")
            self.proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        self._stop = True
        self._thread.join(timeout=2)
        os.close(self.master)


# --------------------------------------------------------------------------------------------------
# Producers


def produce(run_dir: str, seconds: float, rate: float, work_ms: float, episode_every: int, start_step: int) -> None:
    """A trainer-like loop: fixed work per step, logging through RunWriter. Prints steps done."""
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    run = RunWriter(run_dir)
    signal.signal(signal.SIGTERM, lambda *a: run.request_stop())
    a = np.random.default_rng(0).standard_normal((96, 96))
    step = start_step
    t0 = time.perf_counter()
    deadline = t0 + seconds
    next_at = t0
    while time.perf_counter() < deadline and not run.stop_requested:
        if work_ms:
            until = time.perf_counter() + work_ms / 1000
            while time.perf_counter() < until:
                a = np.tanh(a @ a * 0.01)
        step += 1
        run.scalars({"LossQ": 1.0 / (1 + step / 1e4) + 0.01 * (step % 7), "LossPi": -step / 1e3,
                     "StepsPerSec": 100.0 + (step % 13), "TimeUpdate": 0.004, "TimeEnv": 0.001}, step)
        if step % episode_every == 0:
            run.episode(step, -1000.0 + step / 100 + (step % 17), 200)
        if step % 100 == 0:
            run.set_progress(step=step, total_steps=10_000_000)
        if rate:
            next_at += 1.0 / rate
            delay = next_at - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
    run.close("stopped" if run.stop_requested else "finished")
    print(step - start_step, time.perf_counter() - t0)


def spawn_producer(run_dir: Path, seconds: float, rate: float, work_ms: float, episode_every: int,
                   start_step: int = 0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, __file__, "_produce", str(run_dir), str(seconds), str(rate),
                             str(work_ms), str(episode_every), str(start_step)],
                            stdout=subprocess.PIPE, text=True, start_new_session=True,
                            env={**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"})


def prefill(runs_dir: Path, name: str, points: int, episodes: int, finished: bool) -> Path:
    """Write `points` scalar steps (4 series) and `episodes` episodes quickly through RunWriter."""
    rd = create_run(runs_dir, kind="train", name=name, algo="sac", env="Pendulum-v1", seed=0,
                    config={"lr": 0.001, "gamma": 0.99, "steps": 10_000_000})
    run = RunWriter(rd, heartbeat=False)
    rng = np.random.default_rng(0)
    noise = rng.standard_normal(points)
    every = max(1, points // max(1, episodes))
    for step in range(points):
        run.scalars({"LossQ": 1.0 / (1 + step / 1e4) + 0.1 * noise[step], "LossPi": -step / 1e3,
                     "StepsPerSec": 100.0 + 5 * noise[step - 1], "TimeUpdate": 0.004}, step)
        if step % every == 0:
            run.episode(step, -1000.0 + step / 100 + 50 * noise[step], 200)
        if step % 20_000 == 0:
            run.flush()
    run.set_progress(step=points, total_steps=10_000_000)
    if finished:
        run.close("finished")
    else:
        run.flush()
        run.close("stopped")  # the live producer below claims the run again (status running)
    return rd


# --------------------------------------------------------------------------------------------------
# Parts


def bench_live(args) -> dict:
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        rd = prefill(Path(tmp), "live", 100_000, 100_000, finished=False)
        producer = spawn_producer(rd, seconds=args.repeats * (args.window + args.warmup + 8) + 30, rate=100,
                                  work_ms=0, episode_every=1, start_step=100_000)
        try:
            time.sleep(1.5)
            for _ in range(args.repeats):
                viewer = PtyViewer(rd)
                time.sleep(args.warmup)
                b0, c0, t0 = viewer.bytes, viewer.cpu_seconds(), time.perf_counter()
                time.sleep(args.window)
                b1, c1, t1 = viewer.bytes, viewer.cpu_seconds(), time.perf_counter()
                viewer.close()
                results.append({"cpu_percent": 100 * (c1 - c0) / (t1 - t0), "bytes_per_s": (b1 - b0) / (t1 - t0)})
                print(f"  live: cpu {results[-1]['cpu_percent']:.2f}% of a core, "
                      f"{results[-1]['bytes_per_s'] / 1000:.1f} KB/s", flush=True)
        finally:
            producer.send_signal(signal.SIGTERM)
            producer.wait()
    return {"cpu_percent_median": statistics.median(r["cpu_percent"] for r in results),
            "kb_per_s_median": statistics.median(r["bytes_per_s"] for r in results) / 1000, "runs": results}


def attach_times(big: Path, tiny: Path, repeats: int, tiny_name: str) -> dict[str, list[float]]:
    """`repeats` times: the first frame with data of a viewer of `tiny` (what start-up alone costs at
    that moment), then of `big`; each's seconds and viewer CPU seconds, and the load average."""
    out: dict[str, list[float]] = {"times": [], "cpus": [], "small": [], "small_cpus": [], "loads": []}
    for _ in range(repeats):
        viewer = PtyViewer(tiny)
        if viewer.wait_first_data(30):
            out["small"].append(viewer.first_data_at - viewer.started)
            out["small_cpus"].append(viewer.first_data_cpu)
        viewer.close()
        viewer = PtyViewer(big)
        if viewer.wait_first_data(60):
            out["times"].append(viewer.first_data_at - viewer.started)
            out["cpus"].append(viewer.first_data_cpu)
            out["loads"].append(os.getloadavg()[0])
            print(f"  attach: first frame with data after {out['times'][-1]:.3f} s (viewer CPU by then "
                  f"{_seconds(out['cpus'][-1])}; {tiny_name}: {_seconds(out['small'][-1])}, CPU "
                  f"{_seconds(out['small_cpus'][-1])}; load {out['loads'][-1]:.1f})", flush=True)
        viewer.close()
        time.sleep(0.5)
    return out


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f} s"  # CPU time is None where the viewer had exited


def bench_attach(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        rd = prefill(Path(tmp), "million", 250_000, 10_000, finished=True)
        tiny = prefill(Path(tmp), "tiny", 100, 10, finished=True)
        size = sum(f.stat().st_size for f in rd.iterdir() if f.is_file())
        print(f"  wrote 1,000,000 scalar records + 10,000 episodes ({size / 1e6:.0f} MB) in "
              f"{time.perf_counter() - t:.1f} s", flush=True)
        found = attach_times(rd, tiny, args.repeats, "a 400-record run")
    times, cpus = found["times"], found["cpus"]
    return {"first_frame_s_median": statistics.median(times), "first_frame_s_min": min(times),
            "viewer_cpu_s_to_first_frame_median": statistics.median(c for c in cpus if c is not None),
            "tiny_run_first_frame_s_median": statistics.median(found["small"]), "runs": times}


def steps_in_window(run_dir: Path, t0: float, t1: float) -> float:
    """Trainer steps/s between wall times t0 and t1, from the run's own per-step records."""
    from spintui.profiles.run_reader import RunReader

    series = RunReader(run_dir).poll().scalars["LossQ"]
    inside = (series.times >= t0) & (series.times <= t1)
    return float(inside.sum()) / (t1 - t0)


def bench_viewers(args) -> dict:
    """Viewers attach first; the trainer's rate is taken over a window after they are warm."""
    rates = {0: [], 4: []}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.repeats):
            for n_viewers in (0, 4):
                rd = create_run(Path(tmp), kind="train", algo="sac", env="Pendulum-v1", seed=rep)
                producer = spawn_producer(rd, seconds=args.warmup + args.window + 2, rate=0,
                                          work_ms=args.work_ms, episode_every=200)
                viewers = [PtyViewer(rd) for _ in range(n_viewers)]
                time.sleep(args.warmup)
                t0 = time.time()
                time.sleep(args.window)
                t1 = time.time()
                producer.communicate()
                for v in viewers:
                    v.close()
                rates[n_viewers].append(steps_in_window(rd, t0, t1))
                print(f"  viewers={n_viewers}: {rates[n_viewers][-1]:.1f} steps/s", flush=True)
    base = statistics.median(rates[0])
    watched = statistics.median(rates[4])
    return {"steps_per_s_no_viewer": base, "steps_per_s_four_viewers": watched,
            "loss_percent": 100 * (1 - watched / base), "runs": rates}


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_produce":
        a = sys.argv[2:]
        produce(a[0], float(a[1]), float(a[2]), float(a[3]), int(a[4]), int(a[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("parts", nargs="*", default=["live", "attach", "viewers"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured per repeat")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds before measuring a viewer")
    parser.add_argument("--work-ms", type=float, default=8.0, help="trainer work per step (viewers part)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    results = {}
    for part in args.parts:
        print(f"{part}:", flush=True)
        results[part] = {"live": bench_live, "attach": bench_attach, "viewers": bench_viewers}[part](args)
    print(json.dumps({k: {kk: vv for kk, vv in v.items() if kk != "runs"} for k, v in results.items()}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
