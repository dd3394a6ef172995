"""Run a training job for a run directory that the CLI prepared: ``python -m spintui.algos.launch RUN_DIR``.

The CLI creates the run (manifest with the resolved config) and starts this module as its own
process, in its own session, so training never shares a process with a viewer and outlives the
terminal that started it. Each algorithm module exposes ``train(cfg, run)`` where ``run`` is a
``RunWriter``; it returns when done or when ``run.stop_requested`` becomes true (after a final
checkpoint). Nothing here imports Textual or Rich.

Data-parallel runs (on-policy ``--nproc N``): this process re-executes itself through torch's
elastic launcher, ``python -m torch.distributed.run --standalone --nproc-per-node N -m
spintui.algos.launch RUN_DIR``, and waits for it. Each worker reads RANK/WORLD_SIZE from the
launcher, joins the process group (gloo on CPU, NCCL for CUDA tensors) and gets the run's manifest
(and checkpoint) from rank 0, so only rank 0 needs the run directory and only rank 0 writes it. For
several machines, start the same module with torchrun's usual flags on every node (see README), or
set SPINTUI_TORCHRUN_ARGS to the flags that replace ``--standalone`` here.

A run directory that has a checkpoint is resumed from it (`spintui train --resume`, or an
experiment's scheduler restarting an unfinished run): the writer appends a `resume` record that
supersedes what the previous trainer logged past the checkpoint. A run that a trainer had started
but never checkpointed starts over the same way, from step 0.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
from pathlib import Path

from spintui.algos.config import config_from_manifest
from spintui.algos.registry import algorithm
from spintui.errors import RunError
from spintui.profiles.processes import (
    TRAINER_MODULE,
    install_signal_handlers,
    install_stop_handlers,
    producer_main,
    restore_handlers,
)
from spintui.profiles.run_writer import RunWriter
from spintui.profiles.spinningup import write_config_json
from spintui.profiles.store import RunPaths, clear_stop_request, read_manifest, request_stop


class RankWriter:
    """What ranks other than 0 get instead of a RunWriter: writes nothing, keeps a stop flag."""

    run_dir = None

    def __init__(self) -> None:
        self._stop = threading.Event()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def request_stop(self) -> None:
        self._stop.set()

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: None


def _join_process_group() -> tuple[int, int]:
    """Under torchrun: join the process group; returns (rank, world size)."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch
        import torch.distributed as dist

        if torch.cuda.is_available():
            local_rank = int(os.environ.get("LOCAL_RANK", "0"))
            if local_rank < torch.cuda.device_count():
                torch.cuda.set_device(local_rank)
            backend = "cpu:gloo,cuda:nccl"  # statistics on CPU tensors, gradients on the GPU
        else:
            backend = "gloo"
        dist.init_process_group(backend=backend)
    return rank, world


def _from_rank_0(read, rank: int, world: int):
    """Rank 0 calls `read()` and sends the result to the others (their nodes need not see the run)."""
    if world == 1:
        return read()
    import torch.distributed as dist

    box = [read() if rank == 0 else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _resume_point(run_dir: Path | str) -> dict:
    """{"checkpoint": the run's latest (None: start from scratch)} or {"error": why it cannot be resumed}."""
    from spintui.algos.resume import ResumeError, resume_checkpoint

    try:
        return {"checkpoint": resume_checkpoint(run_dir)}
    except ResumeError as exc:
        return {"error": str(exc)}


def train_run(run_dir: Path | str) -> str:
    """Train the run in `run_dir` in this process; returns the final status."""
    rank, world = _join_process_group()
    ended_together = False
    try:
        manifest = _from_rank_0(lambda: read_manifest(run_dir), rank, world)
        cfg = config_from_manifest(manifest)
        module = algorithm(manifest["algo"]).load()
        point = _from_rank_0(lambda: _resume_point(run_dir), rank, world)
        checkpoint = point.get("checkpoint")
        metrics = RunPaths(run_dir).metrics
        started_before = rank == 0 and metrics.is_file() and metrics.stat().st_size > 0
        if rank == 0 and (checkpoint is not None or started_before):
            clear_stop_request(run_dir)  # answered by the trainer that stopped
        writer = RunWriter(run_dir) if rank == 0 else RankWriter()
        if "error" in point:
            writer.close("failed", error=point["error"])
            raise RunError(point["error"])
        if checkpoint is not None:
            writer.resume(checkpoint["step"], checkpoint["epoch"])
        elif started_before:
            writer.resume(0, 0)  # a trainer started this run but saved no checkpoint: start over
        # After the resume record: the mirror's reader never sees what the resume supersedes.
        mirror = start_side_outputs(run_dir, manifest, cfg) if rank == 0 else None
        gpu_log = start_gpu_log(writer, cfg) if rank == 0 else None
        try:
            status = _train(module, cfg, writer, checkpoint, gpu_log)
        finally:
            if mirror is not None:
                mirror.close()  # after the writer's last flush: every record reaches the event file
        ended_together = world > 1
        return status
    finally:
        if world > 1:
            import torch.distributed as dist

            if dist.is_initialized():
                if ended_together:
                    # Leave together: a rank that tears down its connections while another still
                    # finishes its last collective can make gloo abort that rank.
                    dist.barrier()
                dist.destroy_process_group()


def start_side_outputs(run_dir: Path | str, manifest: dict, cfg):
    """Spinning Up's config.json, and the TensorBoard mirror (returned) when the config asks for it."""
    write_config_json(run_dir, manifest)
    if cfg.tensorboard is None:
        return None
    from spintui.profiles.run_export import TensorBoardMirror
    from spintui.profiles.sources import run_label

    try:
        return TensorBoardMirror(run_dir, Path(cfg.tensorboard) / run_label(Path(run_dir), manifest))
    except OSError as exc:  # the mirror is a copy: training goes on without it
        print(f"spintui: no TensorBoard mirror: {exc}", file=sys.stderr)
        return None


def start_gpu_log(writer, cfg):
    """NVML samples into the run at 1 Hz when it trains on a CUDA device (profiles/gpu_history.py)."""
    from spintui.algos.core import resolve_device

    if resolve_device(cfg.device).type != "cuda":
        return None
    import torch

    from spintui.profiles.gpu import GpuLogger

    index = torch.cuda.current_device()  # the sampling thread has its own current device
    return GpuLogger(writer, own_memory=lambda: torch.cuda.memory_reserved(index)).start()


def _train(module, cfg, writer, checkpoint: dict | None = None, gpu_log=None) -> str:
    previous = install_stop_handlers(writer)  # a clean stop: finish the step, checkpoint, status `stopped`
    try:
        module.train(cfg, writer, checkpoint)
    except BaseException as exc:
        if gpu_log is not None:
            gpu_log.stop()
        writer.close("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        restore_handlers(previous)
    if gpu_log is not None:
        gpu_log.stop()  # its last sample reaches the run before the writer closes
    status = "stopped" if writer.stop_requested else "finished"
    writer.close(status)
    return status


def torchrun_command(run_dir: Path | str, nproc: int) -> list[str]:
    flags = shlex.split(os.environ.get("SPINTUI_TORCHRUN_ARGS", "--standalone"))
    return [sys.executable, "-m", "torch.distributed.run", *flags, "--nproc-per-node", str(nproc),
            "-m", "spintui.algos.launch", str(run_dir)]


def run_data_parallel(run_dir: Path | str, nproc: int) -> int:
    """Start `nproc` workers through torch's elastic launcher and wait for them.

    A first signal here asks for a clean stop through the run's control file (what a viewer does):
    rank 0 sees it, all ranks agree on it at their next check, rank 0 saves the final checkpoint and
    the launcher exits normally. A second signal is passed on to the launcher, which ends the workers.
    """
    proc = subprocess.Popen(torchrun_command(run_dir, nproc))
    signals_seen = []

    def _forward(signum, frame):
        signals_seen.append(signum)
        if len(signals_seen) == 1:
            request_stop(run_dir)
        elif proc.poll() is None:
            proc.send_signal(signum)

    previous = install_signal_handlers(_forward)
    try:
        code = proc.wait()
    finally:
        restore_handlers(previous)
    if code != 0 and read_manifest(run_dir).get("status") == "running":
        # The workers died before rank 0 could record why (rendezvous failure, a killed worker).
        RunWriter(run_dir, heartbeat=False, claim=False).close(
            "failed", error=f"torch.distributed.run exited with code {code}")
    return code


def _launch(run_dir: str) -> int:
    if "RANK" not in os.environ:  # not started by torchrun: maybe start it
        nproc = int(read_manifest(run_dir).get("config", {}).get("nproc") or 1)
        if nproc > 1:
            return 0 if run_data_parallel(run_dir, nproc) == 0 else 1
    try:
        train_run(run_dir)
    except RunError as exc:  # a checkpoint that cannot be resumed: one line in output.log
        print(f"spintui: error: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return producer_main(TRAINER_MODULE, _launch, argv)


if __name__ == "__main__":
    sys.exit(main())
