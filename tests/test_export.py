"""TensorBoard and CSV export, and the mirror a training run writes: read back with TensorBoard's own
reader and compared exactly (float32 for event file values)."""

from __future__ import annotations

import csv
import struct
import time

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c
from tensorboard.plugins.hparams import plugin_data_pb2

from spintui.profiles.run_export import TensorBoardMirror, update_series
from spintui.profiles.run_reader import RunReader
from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import create_run
from spintui.profiles.tensorboard_events import scalar_records
from spintui.tui.cli import main


def cli(*args) -> int:
    try:
        main(list(args))
    except SystemExit as exc:
        return exc.code or 0
    return 0


def accumulate(log_dir) -> EventAccumulator:
    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


def assert_same_points(acc, series):
    """Every tag of `series` is in the event files with the same steps, wall times and float32 values."""
    assert set(acc.Tags()["scalars"]) == set(series)
    for tag, (steps, times, values) in series.items():
        events = acc.Scalars(tag)
        assert [e.step for e in events] == steps.tolist(), tag
        assert [e.wall_time for e in events] == times.tolist(), tag
        assert np.array_equal(np.array([e.value for e in events], np.float32), values.astype(np.float32),
                              equal_nan=True), tag


def test_scalar_records_are_the_bytes_tensorboards_protobuf_writes():
    steps = [0, 5, 127, 128, 300, 2**20, 2**40, -3, 0]
    times = [1.5, 2.25, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.5]
    values = [0.1, -2.5, 3e10, 1e-30, 0.0, np.nan, np.inf, -1.0, 2.0]
    expected = b""
    for s, t, v in zip(steps, times, values):
        data = event_pb2.Event(wall_time=t, step=s, summary=summary_pb2.Summary(
            value=[summary_pb2.Summary.Value(tag="loss/q", simple_value=v)])).SerializeToString()
        header = struct.pack("<Q", len(data))
        expected += header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))
    assert scalar_records("loss/q", steps, times, values) == expected


def test_export_writes_every_series_episodes_epochs_and_hparams(recorded_run, tmp_path, capsys):
    run = recorded_run(tmp_path / "runs", name="sac-a", steps=2000)
    assert cli("export", "sac-a", "--runs-dir", str(tmp_path / "runs"), "--tensorboard", str(tmp_path / "tb"),
               "--csv", str(tmp_path / "csv")) == 0
    series = update_series(RunReader(run).poll())
    assert {"LossQ", "TimeUpdate", "episode/return", "episode/length", "test/return", "epoch/AverageEpRet",
            "epoch/StepsPerSec"} <= set(series)
    acc = accumulate(tmp_path / "tb" / "sac-a")
    assert_same_points(acc, series)
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    hparams = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info.hparams
    assert hparams["algo"].string_value == "sac" and hparams["gamma"].number_value == 0.99
    assert hparams["batch_size"].number_value == 100 and hparams["env"].string_value == "Pendulum-v1"

    with open(tmp_path / "csv" / "sac-a.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["series", "step", "wall_time", "value"]
    for tag, (steps, times, values) in series.items():
        mine = [r for r in rows if r["series"] == tag]
        assert [int(r["step"]) for r in mine] == steps.tolist()
        assert [float(r["wall_time"]) for r in mine] == times.tolist()  # full precision, not float32
        assert [float(r["value"]) for r in mine] == values.tolist()
    with open(tmp_path / "csv" / "sac-a.epochs.csv") as f:
        epochs = list(csv.DictReader(f))
    assert [int(r["Epoch"]) for r in epochs] == [1, 2] and float(epochs[1]["StepsPerSec"]) == 110.0 + 1999 / 100


def test_exporting_again_replaces_the_previous_export(recorded_run, tmp_path):
    run = recorded_run(tmp_path / "runs", name="r", steps=300)
    for _ in range(2):
        assert cli("export", str(run), "--tensorboard", str(tmp_path / "tb")) == 0
    assert len(list((tmp_path / "tb" / "r").iterdir())) == 1
    assert len(accumulate(tmp_path / "tb" / "r").Scalars("LossQ")) == 300


def test_the_mirror_tails_a_growing_run_into_the_same_events_as_an_export(tmp_path):
    run_dir = create_run(tmp_path / "runs", kind="train", name="live", algo="sac", env="Pendulum-v1",
                         config={"gamma": 0.99, "hidden_sizes": [4, 4], "env_kwargs": {"g": 9.0}})
    writer = RunWriter(run_dir, heartbeat=False)
    mirror = TensorBoardMirror(run_dir, tmp_path / "tb" / "live", interval=0.05)
    for step in range(400):
        writer.scalars({"LossQ": 1.0 / (step + 1), "LossPi": step * 0.5}, step)
        if step % 50 == 49:
            writer.episode(step, -float(step), 50)
            writer.epoch(step // 50, step + 1, {"AverageEpRet": -float(step), "TotalEnvInteracts": step + 1})
            writer.flush()
            time.sleep(0.06)  # let the mirror see the run in several pieces
    writer.close("finished")
    mirror.close()
    assert mirror.points == 2 * 400 + 8 * 2 + 8 * 2 and 0 <= mirror.busy_s < 5
    assert_same_points(accumulate(tmp_path / "tb" / "live"), update_series(RunReader(run_dir).poll()))


def test_a_resumed_run_is_mirrored_without_what_the_resume_superseded(tmp_path, monkeypatch):
    from spintui.algos.config import config_to_dict, make_config
    from spintui.algos.launch import train_run

    cfg = make_config("sac", {"env": "Pendulum-v1", "threads": 1, "steps": 400, "steps_per_epoch": 200,
                              "start_steps": 100, "update_after": 100, "num_test_episodes": 1, "max_ep_len": 100,
                              "hidden_sizes": "16,16", "replay_size": 2000, "tensorboard": str(tmp_path / "tb")})
    run_dir = create_run(tmp_path / "runs", kind="train", name="cut", algo="sac", env=cfg.env, seed=0,
                         config=config_to_dict(cfg))
    original = RunWriter.epoch

    def stop_after_first(self, epoch, step, stats):
        original(self, epoch, step, stats)
        if epoch == 1:
            self.request_stop()

    with monkeypatch.context() as patch:
        patch.setattr(RunWriter, "epoch", stop_after_first)
        assert train_run(run_dir) == "stopped"
    killed = RunWriter(run_dir, heartbeat=False, claim=False)  # what a trainer killed past the checkpoint wrote
    killed.scalars({"LossQ": 1e6}, 300)
    killed.episode(300, 1e6, 100)
    killed.flush()
    assert train_run(run_dir) == "finished"  # resumes from the checkpoint at step 200
    acc = accumulate(tmp_path / "tb" / "cut")
    assert_same_points(acc, update_series(RunReader(run_dir).poll()))
    assert max(s.value for s in acc.Scalars("LossQ")) < 1e6
    assert [s.step for s in acc.Scalars("epoch/TotalEnvInteracts")] == [200, 400]


def test_a_training_run_with_tensorboard_is_mirrored(drift_run):
    _, run_dir, tb_dir = drift_run
    acc = accumulate(tb_dir / "drift")
    assert_same_points(acc, update_series(RunReader(run_dir).poll()))
    assert acc.Scalars("epoch/TotalEnvInteracts")[-1].value == 140.0


@pytest.mark.parametrize("args, fragment", [
    (["export", "nope", "--tensorboard", "x"], "no run 'nope'"),
    (["export", "r"], "--tensorboard DIR, --csv DIR or both"),
    (["export", "--csv", "x"], "give the runs or experiments to export"),
])
def test_export_mistakes_are_one_line_and_create_nothing(args, fragment, recorded_run, tmp_path, capsys,
                                                         monkeypatch):
    recorded_run(tmp_path / "runs", name="r", steps=10)
    monkeypatch.chdir(tmp_path)
    code = cli(*args, "--runs-dir", str(tmp_path / "runs"))
    err = capsys.readouterr().err.strip()
    assert code in (1, 2) and len(err.splitlines()) == 1 and fragment in err, err
    assert not (tmp_path / "x").exists()


def test_an_experiment_exports_one_directory_per_run(tmp_path):
    from spintui.profiles.experiments import create_experiment

    points = [{"name": f"s{seed}", "env": "Pendulum-v1", "seed": seed, "config": {"seed": seed},
               "values": {"seed": seed}}
              for seed in (0, 1)]
    exp = create_experiment(tmp_path / "runs", "exp", algo="sac", varying=["seed"], grid={"seed": [0, 1]},
                            points=points, argv=[], settings={})
    for seed in (0, 1):
        with RunWriter(exp / f"s{seed}", heartbeat=False) as w:
            w.scalars({"LossQ": float(seed)}, 1)
    assert cli("export", "exp", "--runs-dir", str(tmp_path / "runs"), "--tensorboard", str(tmp_path / "tb")) == 0
    for seed in (0, 1):
        assert [e.value for e in accumulate(tmp_path / "tb" / "exp" / f"s{seed}").Scalars("LossQ")] == [seed]
