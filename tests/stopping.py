"""Stopping a training run at a chosen point, as a user's stop request does (shared by test modules)."""

from __future__ import annotations

from pathlib import Path

from spintui.algos.launch import train_run
from spintui.profiles.run_writer import RunWriter


def stopped_after_first_epoch(monkeypatch, run_dir: Path) -> None:
    """Train `run_dir` until its first epoch is logged and checkpointed, then stop it cleanly."""
    original = RunWriter.epoch

    def epoch(self, epoch, step, stats):
        original(self, epoch, step, stats)
        if epoch == 1:
            self.request_stop()

    with monkeypatch.context() as patch:
        patch.setattr(RunWriter, "epoch", epoch)
        assert train_run(run_dir) == "stopped"
