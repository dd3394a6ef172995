"""The headless follower's summary: the numbers it prints are the ones it names."""

from __future__ import annotations

from rich.console import Console

from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import create_run
from spintui.tui.follow import MEAN_OF_EPISODES, follow_run


def test_summary_names_the_test_return_and_the_mean_of_recent_episodes(tmp_path):
    run_dir = create_run(tmp_path, kind="train", algo="sac", env="Pendulum-v1", seed=0, config={})
    writer = RunWriter(run_dir)
    returns = [-1000.0 + 50 * i for i in range(15)]  # the last 10 average -475
    for i, ret in enumerate(returns):
        writer.episode(200 * (i + 1), ret, 200)
    writer.episode(3000, -5.0, 200, test=True)  # test episodes are not training returns
    writer.epoch(1, 3000, {"AverageEpRet": -475.0, "AverageTestEpRet": -140.0})
    writer.set_progress(step=3000, total_steps=3000, last_return=returns[-1], test_return=-140.0)
    writer.close("finished")

    console = Console(record=True, width=200, force_terminal=False)
    assert follow_run(run_dir, console=console, stop_on_interrupt=False) == "finished"
    text = console.export_text()
    expected = sum(returns[-MEAN_OF_EPISODES:]) / MEAN_OF_EPISODES
    assert "finished: 3,000 steps, test return -140.0" in text
    assert f"mean return of the last {MEAN_OF_EPISODES} episodes {expected:.1f}" in text
    assert "epoch 1  step 3,000" in text
