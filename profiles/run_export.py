"""A run's logs as TensorBoard event files or tidy CSV, at once (`spintui export`) or while it trains
(`--tensorboard DIR`: a thread in the trainer tails the run and appends events).

What becomes which TensorBoard tag (step: environment steps; wall time: when it was logged):

    every scalar series        its own name (LossQ, LossPi, TimeUpdate, ...)
    training episodes          episode/return, episode/length
    test episodes              test/return, test/length
    epoch statistics           epoch/<name> (epoch/AverageEpRet, epoch/TotalEnvInteracts, ...)
    the config                 hparams (the algorithm, the environment and every option), with the
                               epoch returns as its metrics

Each run gets its own directory, DIR/RUN (DIR/EXPERIMENT/RUN for a run of an experiment), so
TensorBoard overlays several runs. Event files spintui wrote there before are replaced, so
exporting again or resuming a mirrored run never doubles a point. TensorBoard stores values as
float32.

CSV: DIR/RUN.csv holds every series above as rows of series, step, wall_time, value (full
precision), DIR/RUN.epochs.csv the epoch table (Epoch, step, wall_time and each statistic).
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np

from spintui.profiles.run_reader import RunReader, Update
from spintui.profiles.spinningup import format_cell
from spintui.profiles.tensorboard_events import EventFile, hparams_records, scalar_records

METRIC_TAGS = ("epoch/AverageTestEpRet", "epoch/AverageEpRet")
MIRROR_INTERVAL_S = 2.0

Series = dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # tag -> (steps, wall times, values)


def update_series(update: Update) -> Series:
    """The points of one RunReader update, per tag."""
    out: Series = {name: (s.steps, s.times, s.values) for name, s in update.scalars.items()}
    points: dict[str, list[tuple[int, float, float]]] = {}
    for rec in update.records:
        kind, step, when = rec.get("kind"), rec.get("step"), rec.get("time")
        if not isinstance(step, int) or not isinstance(when, (int, float)):
            continue
        if kind == "episode":
            prefix = "test" if rec.get("test") else "episode"
            for field, name in (("ret", "return"), ("length", "length")):
                if _is_number(rec.get(field)):
                    points.setdefault(f"{prefix}/{name}", []).append((step, when, rec[field]))
        elif kind == "epoch" and isinstance(rec.get("stats"), dict):
            for name, value in rec["stats"].items():
                if _is_number(value):
                    points.setdefault(f"epoch/{name}", []).append((step, when, value))
    for tag, rows in points.items():
        steps, times, values = zip(*rows)
        out[tag] = (np.array(steps, dtype=np.int64), np.array(times, dtype=np.float64),
                    np.array(values, dtype=np.float64))
    return out


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def epoch_rows(update: Update) -> list[dict]:
    return [{"Epoch": rec.get("epoch"), "step": rec.get("step"), "wall_time": rec.get("time"),
             **(rec.get("stats") or {})} for rec in update.records if rec.get("kind") == "epoch"]


def _hparams(manifest: dict, tags, start: float) -> bytes:
    config = {"algo": manifest.get("algo"), "env": manifest.get("env"), **(manifest.get("config") or {})}
    config.pop("tensorboard", None)
    metrics = [t for t in METRIC_TAGS if tags is None or t in tags]
    return hparams_records(config, metrics, manifest.get("name") or "run", start, start)


def write_events(events: EventFile, series: Series) -> int:
    count = 0
    for tag, (steps, times, values) in series.items():
        events.write(scalar_records(tag, steps, times, values))
        count += len(steps)
    return count


# --------------------------------------------------------------------------------------------------
# At once


def export_tensorboard(run_dir: Path | str, log_dir: Path | str) -> int:
    """Write the whole run as event files in `log_dir`; returns the number of scalar points."""
    reader = RunReader(run_dir)
    update = reader.poll()
    series = update_series(update)
    start = float(reader.manifest.get("start_time") or time.time())
    with EventFile(log_dir) as events:
        if reader.manifest.get("kind") == "train":
            events.write(_hparams(reader.manifest, series, start))
        return write_events(events, series)


CSV_CHUNK_ROWS = 100_000


def csv_rows(name: str, steps: np.ndarray, times: np.ndarray, values: np.ndarray) -> str:
    """Rows `name,step,wall_time,value` with floats at full precision (repr: the shortest string that
    reads back to the same float); joined by map rather than formatted row by row, which is slower."""
    if not len(steps):
        return ""
    cells = zip(map(str, steps.tolist()), map(float.__repr__, times.tolist()), map(float.__repr__, values.tolist()))
    return name + "," + ("\n" + name + ",").join(map(",".join, cells)) + "\n"


def export_csv(run_dir: Path | str, path_stem: Path | str) -> int:
    """Write STEM.csv (every series, tidy) and STEM.epochs.csv; returns the number of rows."""
    update = RunReader(run_dir).poll()
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with open(stem.with_name(stem.name + ".csv"), "w") as f:
        f.write("series,step,wall_time,value\n")
        for tag, (steps, times, values) in update_series(update).items():
            name = '"' + tag.replace('"', '""') + '"' if any(c in tag for c in ',"\n') else tag
            for start in range(0, len(steps), CSV_CHUNK_ROWS):
                chunk = slice(start, start + CSV_CHUNK_ROWS)
                f.write(csv_rows(name, steps[chunk], times[chunk], values[chunk]))
            count += len(steps)
    rows = epoch_rows(update)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(stem.with_name(stem.name + ".epochs.csv"), "w") as f:
        f.write(",".join(columns) + "\n")
        f.writelines(",".join(format_cell(row.get(c)) for c in columns) + "\n" for row in rows)
    return count


# --------------------------------------------------------------------------------------------------
# While training


class TensorBoardMirror:
    """A thread that tails a run and appends what is new to an event file every `interval` s.

    `close()` writes what is left (the writer flushed its last records first) and stops the thread.
    """

    def __init__(self, run_dir: Path | str, log_dir: Path | str, interval: float = MIRROR_INTERVAL_S):
        self.reader = RunReader(run_dir)
        self.events = EventFile(log_dir)
        self.interval = interval
        self.points = 0
        self.busy_s = 0.0  # thread time spent reading and writing, the mirror's whole cost to a trainer
        self._hparams_written = False
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="spintui-tensorboard", daemon=True)
        self._thread.start()

    def pump(self) -> int:
        with self._lock:
            if self.events is None:
                return 0
            began = time.thread_time()
            update = self.reader.poll()
            if not self._hparams_written and self.reader.manifest:
                start = float(self.reader.manifest.get("start_time") or time.time())
                self.events.write(_hparams(self.reader.manifest, None, start))
                self._hparams_written = True
            written = write_events(self.events, update_series(update))
            self.points += written
            self.busy_s += time.thread_time() - began
            return written

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            if not self._pump_safely():
                return

    def _pump_safely(self) -> bool:
        """Never lets the mirror end training: a full disk is retried next round, anything else
        stops the mirror with one line in the trainer's log."""
        try:
            self.pump()
        except OSError:
            pass
        except Exception as exc:
            print(f"spintui: TensorBoard mirror stopped: {type(exc).__name__}: {exc}", file=sys.stderr)
            self._close_file()
            return False
        return True

    def _close_file(self) -> None:
        with self._lock:
            if self.events is not None:
                self.events.close()
                self.events = None

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self._pump_safely()
        self._close_file()
        print(f"spintui: TensorBoard mirror: {self.points} points, {self.busy_s:.3f} s of CPU", file=sys.stderr)
