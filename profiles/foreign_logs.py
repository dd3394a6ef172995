"""Logs of the tools users already have, read like spintui runs: TensorBoard log directories (event
files written by Stable-Baselines3, CleanRL or any SummaryWriter) and Spinning Up output directories
(`progress.txt` and `config.json`). Read-only and live: each poll reads only what was appended.

* Kinds: a directory with `run.json` is a spintui run; else one with event files
  (`events.out.tfevents.*`) directly in it is a TensorBoard run; else one with `progress.txt` is a
  Spinning Up run. `find_foreign` searches below a directory for the last two, as TensorBoard and
  Spinning Up's plot.py do (SB3's `tensorboard_log=DIR` writes `DIR/PPO_1`, CleanRL `runs/NAME`).
* Series: a TensorBoard tag's scalars against the event's step and wall time; a progress.txt
  column against `TotalEnvInteracts` (else `Epoch`) and the start time plus `Time`.
* Roles (`tag_role`): SB3's `rollout/ep_rew_mean`, CleanRL's `charts/episodic_return`, spintui's
  exported `episode/return` and Spinning Up's `AverageEpRet` are the training return; SB3's
  `eval/mean_reward`, `test/return` and `AverageTestEpRet` the test return; `time/fps` and
  `charts/SPS` steps/s; a tag with `loss` in its last part, or under `losses/`, a loss; any other
  tag is a series of its own.
* Configuration: runs with the same `exp_name` are seeds of one configuration: Spinning Up's
  config.json `exp_name`; CleanRL's run name `ENV__EXP__SEED__TIME` gives `ENV__EXP`; SB3's `PPO_3`
  gives `PPO` (the log name without the counter SB3 appends); any other directory its own name.
* Status: `running` while one of its files grew in the last LIVE_S (60) seconds, else `finished`.
  A writer that flushes less often (torch's SummaryWriter flushes every 120 s by default) shows as
  finished between flushes.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from spintui.errors import RunError
from spintui.profiles.spinningup import read_config_json, table_columns
from spintui.profiles.store import MANIFEST, PROGRESS, RunPaths
from spintui.profiles.tensorboard_reader import EVENT_FILE_PREFIX, EventDirTail, event_files, require_protos

RUN, TENSORBOARD, SPINNINGUP = "run", "tensorboard", "spinningup"
FOREIGN = (TENSORBOARD, SPINNINGUP)
LIVE_S = 60.0
SEARCH_DEPTH = 4  # how deep find_foreign looks below the directory it is given
KINDS_TEXT = "a spintui run, an experiment, a TensorBoard log directory or a Spinning Up output directory"
LOOKED_FOR = f"{MANIFEST}, experiment.json, {EVENT_FILE_PREFIX}* or {PROGRESS}"

RETURN_TAGS = ("rollout/ep_rew_mean", "charts/episodic_return", "episode/return", "AverageEpRet")
TEST_RETURN_TAGS = ("eval/mean_reward", "test/return", "AverageTestEpRet")
RATE_TAGS = ("time/fps", "charts/SPS", "StepsPerSec")
ROLES = {**dict.fromkeys(RETURN_TAGS, "return"), **dict.fromkeys(TEST_RETURN_TAGS, "test_return"),
         **dict.fromkeys(RATE_TAGS, "rate")}
CLEANRL_NAME = re.compile(r"^(?P<env>.+?)__(?P<exp>.+?)__(?P<seed>-?\d+)__(?P<time>\d+)$")
SB3_NAME = re.compile(r"^(?P<name>.+)_(?P<counter>\d+)$")


def source_kind(path: Path | str) -> str | None:
    """RUN, TENSORBOARD, SPINNINGUP, or None for a directory that is none of them (or no directory)."""
    path = Path(path)
    if os.path.lexists(path / MANIFEST):
        return RUN
    if event_files(path):
        return TENSORBOARD
    if (path / PROGRESS).is_file():
        return SPINNINGUP
    return None


def is_foreign(path: Path | str) -> bool:
    return source_kind(path) in FOREIGN


def find_foreign(path: Path | str, depth: int = SEARCH_DEPTH) -> list[Path]:
    """The TensorBoard and Spinning Up runs at `path` or in the directories below it (not below a
    spintui run), in name order."""
    path = Path(path)
    kind = source_kind(path)
    if kind in FOREIGN:
        return [path]
    if kind == RUN or depth <= 0:
        return []
    try:
        children = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
    return [found for child in children for found in find_foreign(child, depth - 1)]


def check_readable(paths: list[Path]) -> None:
    """UsageError (one line) when TensorBoard runs are among `paths` and cannot be read here."""
    first = next((p for p in paths if source_kind(p) == TENSORBOARD), None)
    if first is not None:
        require_protos(f"reading the TensorBoard run {first}")


def tag_role(name: str) -> str:
    """What a series is for the panels: return, test_return, rate, loss or other."""
    role = ROLES.get(name)
    if role:
        return role
    if name.startswith("losses/") or "loss" in name.rsplit("/", 1)[-1].lower():
        return "loss"
    return "other"


def exp_name(path: Path, kind: str, params: dict) -> str:
    """The name shared by the seeds of one configuration (see the module's docstring)."""
    if kind == SPINNINGUP and isinstance(params.get("exp_name"), str) and params["exp_name"]:
        return params["exp_name"]
    cleanrl = CLEANRL_NAME.match(path.name)
    if cleanrl:
        return f"{cleanrl['env']}__{cleanrl['exp']}"
    sb3 = SB3_NAME.match(path.name)
    return sb3["name"] if sb3 and kind == TENSORBOARD else path.name


def markdown_params(text: str) -> dict:
    """CleanRL's hyperparameters text (`|param|value|` rows) as a dict of numbers, booleans and text."""
    params = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0] and cells[0] != "param" and set(cells[1]) - set("-"):
            params[cells[0]] = _value(cells[1])
    return params


def _value(text: str):
    if text in ("True", "False"):
        return text == "True"
    try:
        return json.loads(text)
    except ValueError:
        return text


@dataclass
class ForeignUpdate:
    """What a poll found: new points by series name; `reset` when what was read before is void
    (a file was replaced or rewritten) and these are all the points."""

    series: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    reset: bool = False

    def __bool__(self) -> bool:
        return bool(self.series) or self.reset


class ProgressTail:
    """A progress.txt read as it grows: each poll takes the complete lines after the last one read.
    A file replaced or shortened (a table rewritten with a wider header) is read again from the top."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.offset = 0
        self.header: list[str] | None = None
        self.identity: tuple | None = None

    def poll(self) -> tuple[bool, dict[str, np.ndarray]]:
        """(reset, the new rows as float columns; an empty or unreadable cell is NaN)."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                identity, reset = (st.st_dev, st.st_ino), False
                if self.identity is not None and (identity != self.identity or st.st_size < self.offset):
                    self.offset, self.header, reset = 0, None, True
                self.identity = identity
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return False, {}
        end = data.rfind(b"\n") + 1  # a line still being written waits for the next poll
        self.offset += end
        lines = [ln for ln in data[:end].decode(errors="replace").splitlines() if ln.strip()]
        if lines and self.header is None:
            self.header = lines.pop(0).split("\t")
        if not lines or self.header is None:
            return reset, {}
        return reset, {k: np.asarray(v, dtype=np.float64) for k, v in table_columns(self.header, lines).items()}


class ForeignLog:
    """A TensorBoard run or a Spinning Up run, polled for new points; `info()` describes it as a
    run's manifest does (kind, algo, env, config, start time) for the views that read one."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        kind = source_kind(self.path)
        if kind not in FOREIGN:
            raise RunError(f"{self.path} is not a TensorBoard log directory or a Spinning Up output directory")
        self.kind = kind
        self.params: dict = {}
        self.start_time: float | None = None
        self.last_time: float | None = None  # the newest point's wall time
        self.error = ""
        if kind == TENSORBOARD:
            require_protos(f"reading the TensorBoard run {self.path}")
            self._events = EventDirTail(self.path)
        else:
            self._progress = ProgressTail(self.path / PROGRESS)
            self.params = read_config_json(self.path)

    def poll(self) -> ForeignUpdate:
        if self.kind == TENSORBOARD:
            return self._poll_events()
        return self._poll_progress()

    def _poll_events(self) -> ForeignUpdate:
        reset, update = self._events.poll()
        self.error = self._events.error
        for tag, text in update.texts.items():
            if tag.split("/")[0] == "hyperparameters":
                self.params = markdown_params(text)
        self.start_time = self._events.first_time
        series = update.arrays()
        self._saw(series)
        return ForeignUpdate(series, reset)

    def _poll_progress(self) -> ForeignUpdate:
        reset, columns = self._progress.poll()
        if not columns:
            return ForeignUpdate({}, reset)
        if self.start_time is None or reset:
            self.start_time = self._guess_start(columns)
        steps = columns.get("TotalEnvInteracts", columns.get("Epoch"))
        if steps is None:
            steps = np.arange(len(next(iter(columns.values()))), dtype=np.float64)
        seconds = columns.get("Time")
        times = self.start_time + seconds if seconds is not None else np.full(len(steps), math.nan)
        series = {name: (steps, times, values) for name, values in columns.items()}
        self._saw(series)
        return ForeignUpdate(series, reset)

    def _guess_start(self, columns: dict[str, np.ndarray]) -> float:
        """Spinning Up writes config.json as a run starts; else the table's age less its last Time."""
        try:
            return RunPaths(self.path).config_json.stat().st_mtime
        except OSError:
            pass
        seconds = columns.get("Time")
        last = float(seconds[-1]) if seconds is not None and len(seconds) and math.isfinite(seconds[-1]) else 0.0
        try:
            return (self.path / PROGRESS).stat().st_mtime - last
        except OSError:
            return time.time() - last

    def _saw(self, series: dict) -> None:
        newest = [float(np.nanmax(times)) for _, times, _ in series.values() if len(times) and
                  not np.isnan(times).all()]
        if newest:
            self.last_time = max(newest + ([self.last_time] if self.last_time else []))

    def last_change(self) -> float:
        """The newest modification time of its files."""
        if self.kind == TENSORBOARD:
            return self._events.last_change()
        try:
            return (self.path / PROGRESS).stat().st_mtime
        except OSError:
            return 0.0

    def status(self, now: float | None = None, last_change: float | None = None) -> str:
        now = time.time() if now is None else now
        changed = self.last_change() if last_change is None else last_change
        return "running" if now - changed < LIVE_S else "finished"

    def info(self) -> dict:
        """What a run's manifest would say: kind, algo, env, config (its `exp_name`), start time."""
        name = exp_name(self.path, self.kind, self.params)
        cleanrl = CLEANRL_NAME.match(self.path.name)
        env = next((self.params[k] for k in ("env_id", "env_name", "env") if isinstance(self.params.get(k), str)),
                   cleanrl["env"] if cleanrl else None)
        algo = self.params.get("exp_name") if self.kind == TENSORBOARD else None
        if not isinstance(algo, str):
            algo = cleanrl["exp"] if cleanrl else name
        return {"kind": "train", "source": self.kind, "algo": algo, "env": env, "config": {"exp_name": name},
                "params": self.params, "start_time": self.start_time, "heartbeat": self.last_time}


def read_all(path: Path | str) -> tuple[ForeignLog, dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]]:
    """A foreign run's every series as it is now (one poll)."""
    log = ForeignLog(path)
    return log, log.poll().series
