"""The viewer's parse cache (tui/tail_cache.py): a second viewer of a large log loads what the first
parsed and reads only what was appended since; anything that does not match is read from the log."""

import numpy as np
import pytest

from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import RunPaths, create_run
from spintui.tui import tail_cache
from spintui.tui.data import RunTail


@pytest.fixture
def small_threshold(monkeypatch):
    monkeypatch.setattr(tail_cache, "CACHE_MIN_BYTES", 10_000)


def write(run, start, stop):
    for step in range(start, stop):
        run.scalars({"LossQ": 1.0 / (step + 1)}, step)
        run.episode(step, -float(step), 10, test=step % 50 == 0)
        if step % 100 == 99:
            run.epoch(step // 100, step, {"AverageEpRet": -float(step), "Alpha": 0.2})
    run.log("event", message="checkpoint saved")
    run.flush()


def same(a: RunTail, b: RunTail) -> None:
    for which in ("episodes", "test_episodes"):
        for column in ("steps", "times", "values"):
            np.testing.assert_array_equal(getattr(getattr(a, which), column), getattr(getattr(b, which), column))
    assert sorted(a.epoch_stats) == sorted(b.epoch_stats)
    for name in a.epoch_stats:
        np.testing.assert_array_equal(a.epoch_stats[name].values, b.epoch_stats[name].values)
    np.testing.assert_array_equal(a.scalars["LossQ"].values, b.scalars["LossQ"].values)
    assert (a.records, a.events, a.reader.key_names) == (b.records, b.events, b.reader.key_names)


def test_a_second_viewer_loads_what_the_first_parsed(tmp_path, small_threshold, viewer_cache, monkeypatch):
    rd = create_run(tmp_path, kind="train", algo="sac", env="Pendulum-v1", seed=0)
    run = RunWriter(rd, heartbeat=False)
    write(run, 0, 400)
    first = RunTail(rd)
    assert first.poll()
    assert len(list(viewer_cache.iterdir())) == 1, "a large log is cached"

    write(run, 400, 450)  # appended after the cache was written
    parsed = []
    real = RunTail._take_records
    monkeypatch.setattr(RunTail, "_take_records",
                        lambda self, records: parsed.append(len(records)) or real(self, records))
    second = RunTail(rd)
    assert second.poll()
    assert len(parsed) == 1 and parsed[0] < 60, "only what came after the cached offset is parsed"
    assert first.poll()
    same(first, second)
    assert len(second.episodes) == 441 and len(second.test_episodes) == 9
    run.close()


def test_a_log_that_does_not_match_its_entry_is_read_in_full(tmp_path, small_threshold, viewer_cache):
    rd = create_run(tmp_path, kind="train", algo="sac", env="Pendulum-v1", seed=0)
    with RunWriter(rd, heartbeat=False) as run:
        write(run, 0, 400)
    RunTail(rd).poll()
    metrics = RunPaths(rd).metrics
    data = bytearray(metrics.read_bytes())
    data[data.index(b'"ret":-1.0') + 6:data.index(b'"ret":-1.0') + 10] = b"-7.0"  # another log at this path
    metrics.write_bytes(bytes(data))
    tail = RunTail(rd)
    tail.poll()
    assert tail.episodes.values[0] == -7.0, "read from the log, not from the entry made for the old one"

    (next(viewer_cache.iterdir())).write_bytes(b"not a cache entry")  # a damaged entry is a miss
    again = RunTail(rd)
    again.poll()
    same(tail, again)


def test_off_disables_the_cache(tmp_path, small_threshold, monkeypatch, viewer_cache):
    monkeypatch.setenv("SPINTUI_VIEWER_CACHE", "off")
    rd = create_run(tmp_path, kind="train", algo="sac", env="Pendulum-v1", seed=0)
    with RunWriter(rd, heartbeat=False) as run:
        write(run, 0, 400)
    assert RunTail(rd).poll() and not any(viewer_cache.iterdir())


def test_the_smoothed_returns_are_kept_too(tmp_path, small_threshold, monkeypatch):
    rd = create_run(tmp_path, kind="train", algo="sac", env="Pendulum-v1", seed=0)
    with RunWriter(rd, heartbeat=False) as run:
        write(run, 0, 400)
    first = RunTail(rd)
    first.poll(keep=False)  # as Preload does: parse, smooth, then keep both
    expected = first.episodes.smoothed(0.6).copy()
    first.keep_parsed()
    second = RunTail(rd)
    second.poll()
    monkeypatch.setattr("spintui.tui.series.ema_debiased", lambda *a: pytest.fail("smoothed again"))
    np.testing.assert_array_equal(second.episodes.smoothed(0.6), expected)


def test_a_cached_viewer_of_a_resumed_run_drops_what_the_resume_superseded(tmp_path, small_threshold, viewer_cache):
    rd = create_run(tmp_path, kind="train", algo="sac", env="Pendulum-v1", seed=0)
    killed = RunWriter(rd, heartbeat=False)
    write(killed, 0, 300)  # then killed: its checkpoint was at step 199
    resumed = RunWriter(rd, heartbeat=False)
    resumed.resume(199, 2)
    write(resumed, 200, 400)
    first = RunTail(rd)
    assert first.poll()
    assert len(list(viewer_cache.iterdir())) == 1
    second = RunTail(rd)  # from the cache; the scalars are read again and must be sifted the same way
    assert second.poll()
    same(first, second)
    assert list(second.scalars["LossQ"].steps) == list(range(400))
    assert list(second.episodes.steps) == [s for s in range(400) if s % 50]
    assert [r["step"] for r in second.resumes] == [199]
    resumed.close()
