"""TensorBoard and Spinning Up runs read like spintui runs, without Textual: the event file reader
(against TensorBoard's own loader, torn and corrupt records), the adapter (kinds, roles, names,
a growing progress.txt), and the tail the dashboards read (tui/foreign_tail.py)."""

from __future__ import annotations

import os
import struct
import time

import numpy as np
import pytest
from foreign_log_writers import (CLEANRL_PARAMS, SPINNINGUP_COLUMNS, age, cleanrl_points, cleanrl_writer,
                                 spinningup_dir, spinningup_row)

from spintui.errors import RunError
from spintui.profiles.foreign_logs import (LIVE_S, ForeignLog, ProgressTail, exp_name, find_foreign, source_kind,
                                           tag_role)
from spintui.profiles.runs import resolve_watch_runs
from spintui.profiles.store import create_run
from spintui.profiles.tensorboard_events import EventFile, file_version_record, record, scalar_records
from spintui.profiles.tensorboard_reader import EventDirTail, EventFileTail, EventUpdate, event_files
from spintui.tui.foreign_tail import ForeignTail, open_tail


# --------------------------------------------------------------------------------------------------
# Stable-Baselines3


def test_sb3_tags_feed_the_panels(sb3_run):
    tail = ForeignTail(sb3_run)
    assert tail.poll()
    assert tail.name == "PPO_1" and tail.kind == "train"
    assert tail.manifest["algo"] == "PPO" and tail.manifest["config"] == {"exp_name": "PPO"}
    train, test = tail.return_series()
    assert train is tail.scalars["rollout/ep_rew_mean"] and test is tail.scalars["eval/mean_reward"]
    assert train.steps[-1] == 2048 and np.all(np.diff(train.steps) == 128) and np.all(train.values > 5)
    assert test.steps.tolist() == [512, 1024, 1536, 2048]  # an evaluation every 512 steps
    assert tail.steps_per_sec() is tail.scalars["time/fps"] and tail.current_steps_per_sec() > 0
    losses = tail.loss_names()
    assert set(losses[:4]) == {"train/loss", "train/value_loss", "train/policy_gradient_loss", "train/entropy_loss"}
    assert {"train/approx_kl", "train/clip_fraction", "rollout/ep_len_mean"} <= set(losses[4:])
    assert not {"rollout/ep_rew_mean", "eval/mean_reward", "time/fps"} & set(losses)
    assert tail.current_step() == 2048 and tail.phase_times() == []
    assert tail.start_time <= train.times[0] <= train.times[-1] <= time.time()
    assert not tail.poll(), "nothing new: nothing changed"


def test_the_reader_agrees_with_tensorboards_own(sb3_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(sb3_run), size_guidance={"scalars": 0})
    accumulator.Reload()
    restarted, update = EventDirTail(sb3_run).poll()
    ours = update.arrays()
    assert not restarted and set(ours) == set(accumulator.Tags()["scalars"])
    for tag, (steps, times, values) in ours.items():
        theirs = accumulator.Scalars(tag)
        np.testing.assert_array_equal(steps, [e.step for e in theirs])
        np.testing.assert_array_equal(times, [e.wall_time for e in theirs])
        np.testing.assert_array_equal(values.astype(np.float32), np.array([e.value for e in theirs], np.float32))


def test_status_is_running_while_a_file_grew_in_the_last_minute(sb3_run, tmp_path):
    import shutil

    copy = shutil.copytree(sb3_run, tmp_path / "PPO_2")
    tail = ForeignTail(copy)
    tail.poll()
    assert tail.status() == "running"
    age(copy, LIVE_S + 1)
    tail.poll()
    assert tail.status() == "finished"
    assert tail.elapsed() == pytest.approx(tail.scalars["rollout/ep_rew_mean"].times[-1] - tail.start_time, abs=5)


# --------------------------------------------------------------------------------------------------
# A SummaryWriter as CleanRL uses it, read as it grows


def test_a_growing_cleanrl_run_is_read_incrementally(tmp_path):
    writer = cleanrl_writer(tmp_path)
    cleanrl_points(writer, range(100, 1100, 100))
    run_dir = find_foreign(tmp_path)[0]
    tail = open_tail(run_dir)
    assert isinstance(tail, ForeignTail) and tail.poll()
    file_tail = next(iter(tail.log._events.files.values()))
    offset, size = file_tail.offset, os.path.getsize(file_tail.path)
    assert offset == size and len(tail.episodes) == 10
    assert tail.manifest["algo"] == "ppo" and tail.manifest["env"] == "CartPole-v1"
    assert tail.manifest["config"] == {"exp_name": "CartPole-v1__ppo"}
    assert tail.log.params == CLEANRL_PARAMS
    assert dict(tail.hyperparameters())["learning_rate"] == 0.00025
    cleanrl_points(writer, range(1100, 1600, 100))
    assert tail.poll()
    assert file_tail.offset == os.path.getsize(file_tail.path) > size
    assert len(tail.episodes) == 15 and tail.episodes.steps[-1] == 1500 and tail.episodes.last() == 25.0 + 1
    assert tail.steps_per_sec() is tail.scalars["charts/SPS"] and tail.steps_per_sec().last() == 1015.0
    assert tail.loss_names()[:3] == ["losses/value_loss", "losses/policy_loss", "losses/approx_kl"]
    assert tail.loss_names()[3:] == ["charts/episodic_length", "charts/learning_rate"]
    assert tail.records == 15 * 7 and tail.status() == "running"
    writer.close()


def test_tag_roles():
    roles = {tag: tag_role(tag) for tag in (
        "rollout/ep_rew_mean", "charts/episodic_return", "episode/return", "AverageEpRet", "eval/mean_reward",
        "AverageTestEpRet", "time/fps", "charts/SPS", "train/critic_loss", "train/ent_coef_loss", "losses/alpha",
        "losses/qf1_values", "train/ent_coef", "charts/episodic_length", "LossPi", "KL")}
    assert roles == {
        "rollout/ep_rew_mean": "return", "charts/episodic_return": "return", "episode/return": "return",
        "AverageEpRet": "return", "eval/mean_reward": "test_return", "AverageTestEpRet": "test_return",
        "time/fps": "rate", "charts/SPS": "rate", "train/critic_loss": "loss", "train/ent_coef_loss": "loss",
        "losses/alpha": "loss", "losses/qf1_values": "loss", "train/ent_coef": "other",
        "charts/episodic_length": "other", "LossPi": "loss", "KL": "other"}


# --------------------------------------------------------------------------------------------------
# Event files: torn, corrupt, replaced


def events(n=5, tag="rollout/ep_rew_mean") -> bytes:
    steps = np.arange(1, n + 1) * 1000
    return file_version_record(1.7e9) + scalar_records(tag, steps, 1.7e9 + steps, steps / 10.0)


VERSION = len(file_version_record(1.7e9))
POINT = (len(events()) - VERSION) // 5  # steps 1000 to 5000 take two varint bytes each: records of one size


def test_a_torn_record_waits_for_the_rest_and_bad_data_are_skipped(tmp_path):
    data = events()
    path = tmp_path / "events.out.tfevents.1.host"
    path.write_bytes(data[:-POINT // 2])  # the last point half written
    tail, update = EventFileTail(path), EventUpdate()
    tail.poll(update)
    assert update.arrays()["rollout/ep_rew_mean"][0].tolist() == [1000, 2000, 3000, 4000]
    assert update.first_time == 1.7e9 and tail.offset == len(data) - POINT
    with open(path, "ab") as f:
        f.write(data[-POINT // 2:])
    update = EventUpdate()
    tail.poll(update)
    assert update.arrays()["rollout/ep_rew_mean"][0].tolist() == [5000] and tail.offset == len(data)

    bad = bytearray(data)
    bad[-6] ^= 0xFF  # inside the last point's value: its data CRC fails
    path.write_bytes(bytes(bad))
    tail, update = EventFileTail(path), EventUpdate()
    tail.poll(update)
    assert update.arrays()["rollout/ep_rew_mean"][0].tolist() == [1000, 2000, 3000, 4000]
    assert tail.skipped == 1 and tail.error == ""


def test_a_corrupt_length_stops_the_file_there(tmp_path):
    data = bytearray(events())
    at = VERSION + 2 * POINT  # the third point's length
    assert struct.unpack_from("<Q", data, at)[0] == POINT - 16
    data[at] ^= 0x01
    path = tmp_path / "events.out.tfevents.1.host"
    path.write_bytes(bytes(data))
    tail, update = EventFileTail(path), EventUpdate()
    tail.poll(update)
    assert update.arrays()["rollout/ep_rew_mean"][0].tolist() == [1000, 2000]
    assert tail.error == f"corrupt record header at byte {at}" and tail.offset == at
    data[at + 1] ^= 0x10  # a length that points past the end is no torn write either
    path.write_bytes(bytes(data))
    tail = EventFileTail(path)
    tail.poll(EventUpdate())
    assert tail.error == f"corrupt record header at byte {at}"


def test_a_replaced_file_is_read_again_and_new_files_are_picked_up(tmp_path):
    with EventFile(tmp_path) as f:
        f.write(events(3))
    directory = EventDirTail(tmp_path)
    restarted, update = directory.poll()
    assert not restarted and len(update.arrays()["rollout/ep_rew_mean"][0]) == 3
    (path,) = event_files(tmp_path)
    replacement = tmp_path / "new"
    replacement.write_bytes(events(2))
    os.replace(replacement, path)
    restarted, update = directory.poll()
    assert restarted and update.arrays()["rollout/ep_rew_mean"][0].tolist() == [1000, 2000]
    (tmp_path / "events.out.tfevents.9.host").write_bytes(events(1, tag="train/loss"))
    restarted, update = directory.poll()
    assert not restarted and list(update.arrays()) == ["train/loss"]


def test_tensor_scalars_zeros_and_text_are_read(tmp_path):
    """TF2's tf.summary.scalar writes tensors; a simple_value of 0.0 is a point too; text is kept."""
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.util.tensor_util import make_tensor_proto

    def event(step, **values):
        ev = Event(wall_time=1.7e9 + step, step=step)
        for tag, v in values.items():
            value = ev.summary.value.add(tag=tag.replace("_", "/"))
            if isinstance(v, str):
                value.tensor.CopyFrom(make_tensor_proto(v.encode()))
            elif isinstance(v, int):
                value.tensor.CopyFrom(make_tensor_proto(np.float32(v)))
            else:
                value.simple_value = v
        return record(ev.SerializeToString())

    data = file_version_record(1.7e9) + event(1, epoch_loss=3, train_acc=0.0) + event(2, epoch_loss=2, note_x="hi")
    data += record(Event(step=3, summary=Summary()).SerializeToString())
    (tmp_path / "events.out.tfevents.1.host").write_bytes(data)
    restarted, update = EventDirTail(tmp_path).poll()
    arrays = update.arrays()
    assert arrays["epoch/loss"][0].tolist() == [1, 2] and arrays["epoch/loss"][2].tolist() == [3.0, 2.0]
    assert arrays["train/acc"][2].tolist() == [0.0] and update.texts == {"note/x": "hi"}
    assert update.first_time == 1.7e9


# --------------------------------------------------------------------------------------------------
# Spinning Up output directories


def test_a_spinningup_directory(tmp_path):
    run_dir = spinningup_dir(tmp_path, epochs=3)
    assert source_kind(run_dir) == "spinningup" and find_foreign(tmp_path) == [run_dir]
    tail = open_tail(run_dir)
    tail.poll()
    assert tail.manifest["config"] == {"exp_name": "ppo-pendulum"} and tail.manifest["algo"] == "ppo-pendulum"
    train, test = tail.return_series()
    assert test is None or not len(test)
    assert train.name == "AverageEpRet" and train.steps.tolist() == [4000, 8000, 12000]
    np.testing.assert_allclose(train.values, [-500, -460, -420])
    np.testing.assert_allclose(train.times - tail.start_time, [3.5, 7.0, 10.5])
    assert tail.loss_names()[:4] == ["LossPi", "LossV", "DeltaLossPi", "DeltaLossV"]
    assert "StdEpRet" not in tail.loss_names() and "TotalEnvInteracts" not in tail.loss_names()
    np.testing.assert_allclose(tail.steps_per_sec().values, 4000 / 3.5)
    assert dict(tail.hyperparameters()) == {"gamma": 0.99, "pi_lr": 0.0003, "steps_per_epoch": 4000, "seed": 0}


def test_progress_txt_is_read_a_line_at_a_time_and_again_when_rewritten(tmp_path):
    path = tmp_path / "progress.txt"
    path.write_text("\t".join(SPINNINGUP_COLUMNS) + "\n" + "\t".join(map(str, spinningup_row(0))) + "\n")
    progress = ProgressTail(path)
    reset, columns = progress.poll()
    assert not reset and columns["Epoch"].tolist() == [0]
    row = "\t".join(map(str, spinningup_row(1)))
    with open(path, "a") as f:
        f.write(row[:10])  # half a line: not yet
    assert progress.poll() == (False, {})
    with open(path, "a") as f:
        f.write(row[10:] + "\n")
    reset, columns = progress.poll()
    assert not reset and columns["Epoch"].tolist() == [1] and columns["AverageEpRet"].tolist() == [-460.0]
    replacement = tmp_path / "new"
    replacement.write_text("Epoch\tAverageEpRet\tExtra\n0\t1.5\t\n1\t2.5\tx\n")
    os.replace(replacement, path)
    reset, columns = progress.poll()
    assert reset and columns["AverageEpRet"].tolist() == [1.5, 2.5] and np.isnan(columns["Extra"]).all()


# --------------------------------------------------------------------------------------------------
# Finding them


def test_kinds_names_and_what_watch_resolves(tmp_path, sb3_run):
    import shutil

    root = tmp_path / "logs"
    sb3 = shutil.copytree(sb3_run, root / "sb3" / "PPO_1")
    shutil.copytree(sb3_run, root / "sb3" / "PPO_2")
    cleanrl_writer(root / "cleanrl").close()
    spin = spinningup_dir(root / "spinup", epochs=1)
    run = create_run(root / "runs", kind="train", name="ours", algo="sac", env="Pendulum-v1")
    (run / "progress.txt").write_text("Epoch\n")  # a spintui run stays one: its progress.txt is its own
    assert source_kind(run) == "run" and source_kind(sb3) == "tensorboard" and source_kind(root) is None
    found = find_foreign(root)
    assert [p.relative_to(root).as_posix() for p in found] == [
        "cleanrl/CartPole-v1__ppo__1__1700000000", "sb3/PPO_1", "sb3/PPO_2", "spinup/ppo-pendulum/ppo-pendulum_s0"]
    assert [exp_name(p, source_kind(p), ForeignLog(p).params) for p in found] == [
        "CartPole-v1__ppo", "PPO", "PPO", "ppo-pendulum"]
    runs_dir = root / "runs"
    assert resolve_watch_runs([str(root / "sb3"), "ours", str(spin)], runs_dir) == [
        root / "sb3" / "PPO_1", root / "sb3" / "PPO_2", run, spin]
    assert resolve_watch_runs([str(root / "sb3" / "PPO_*")], runs_dir) == [root / "sb3" / "PPO_1",
                                                                            root / "sb3" / "PPO_2"]
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(RunError, match="is not a spintui run, an experiment, a TensorBoard log directory or a "
                                       "Spinning Up output directory .found no run.json, experiment.json, "
                                       r"events.out.tfevents.\* or progress.txt in it or below it"):
        resolve_watch_runs([str(tmp_path / "empty")], runs_dir)
