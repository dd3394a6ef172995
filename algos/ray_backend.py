"""Experiments on a Ray cluster: one task per run, placed by Ray with the run's CPUs and GPUs.

Each task runs the same trainer process a local run does (``python -m spintui.algos.launch RUN``)
on whichever node Ray picks, so every node needs spintui installed and the runs directory on storage
that every node sees (NFS, Lustre, ...). `check_cluster` checks the second up front: a task pinned to
each node writes a file there, and the driver must see every one of them.

Ray is an optional extra (`pip install spintui[ray]`); only this module imports it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

from spintui.errors import UsageError
from spintui.profiles.processes import TRAINER_MODULE
from spintui.profiles.provenance import host_name
from spintui.profiles.store import RunPaths, request_stop


def _ray():
    try:
        import ray
    except ImportError:
        raise UsageError("--ray needs Ray: pip install 'spintui[ray]'") from None
    return ray


@contextlib.contextmanager
def _quiet_stderr():
    """Ray's C++ core writes start-up notes straight to file descriptor 2; a command's errors are one
    line, so they go to /dev/null while connecting (failures still arrive as exceptions)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _check_reachable(address: str) -> None:
    """Ray retries an unreachable head for minutes; one TCP connect says at once whether it is there."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(f"--ray must be auto or HOST:PORT of a Ray head, got {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise UsageError(f"--ray {address}: no Ray head answers there ({exc.strerror or exc}); start one with "
                         f"`ray start --head` or give its address") from None


def connect(address: str):
    """Join an existing cluster (`auto`: the one RAY_ADDRESS or a local head names)."""
    ray = _ray()
    if not ray.is_initialized():
        _check_reachable(address)
        try:
            with _quiet_stderr():
                ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UsageError(f"--ray {address}: cannot connect to a Ray cluster ({first[:200]})") from None
    return ray


def resources(config: dict) -> dict:
    """What one run asks Ray for: its threads (times its data-parallel processes) and a GPU on CUDA."""
    cpus = int(config.get("threads") or 1) * int(config.get("nproc") or 1)
    gpus = 1 if config.get("device") == "cuda" else 0
    return {"num_cpus": cpus, "num_gpus": gpus}


def _write_probe(directory: str, token: str) -> str:
    path = Path(directory) / f".spintui-probe-{token}-{host_name()}-{os.getpid()}"
    try:
        path.write_text(token)
    except OSError as exc:
        return f"error: {host_name()} cannot write {directory}: {exc.strerror or exc}"
    return str(path)


def check_cluster(address: str, runs_dir: Path, configs: list[dict]) -> int:
    """Before anything is created: every run fits on some node, every alive node can write `runs_dir`
    and this machine sees what it wrote. Returns the number of nodes; raises UsageError naming the
    first problem."""
    ray = connect(address)
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    for key, ray_key in (("num_cpus", "CPU"), ("num_gpus", "GPU")):
        need = max(resources(c)[key] for c in configs)
        have = max((n.get("Resources", {}).get(ray_key, 0) for n in nodes), default=0)
        if need > have:
            raise UsageError(f"--ray: a run needs {need} {ray_key}s on one node (threads x nproc, or a GPU for "
                             f"--device cuda); the largest node has {have:g}")
    return _probe_storage(ray, nodes, runs_dir)


def _probe_storage(ray, nodes: list[dict], runs_dir: Path) -> int:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    runs_dir.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:12]
    probe = ray.remote(num_cpus=0)(_write_probe)
    refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
            .remote(str(runs_dir.resolve()), token) for n in nodes]
    try:
        for node, result in zip(nodes, ray.get(refs, timeout=120)):
            where = node.get("NodeManagerAddress", node["NodeID"][:8])
            if result.startswith("error: "):
                raise UsageError(f"--ray: node {where}: {result[7:]}")
            if not Path(result).is_file():
                raise UsageError(f"--ray: node {where} wrote {result}, which this machine cannot see; the runs "
                                 f"directory must be storage that every node shares")
            Path(result).unlink()
    except ray.exceptions.GetTimeoutError:
        raise UsageError("--ray: the storage probe did not finish within 120 s (no free CPU on a node?)") from None
    return len(nodes)


def _train_on_node(run_dir: str) -> int:
    with open(RunPaths(run_dir).output_log, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", TRAINER_MODULE, run_dir], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # ray.cancel: the run was asked to stop through its control file
            continue


class RayBackend:
    """The scheduler's view of Ray: submit a run, learn which finished, cancel what has not started."""

    def __init__(self, address: str, exp_dir: Path):
        self.ray = connect(address)
        self.task = self.ray.remote(_train_on_node)
        self.refs: dict[object, Path] = {}

    def capacity(self) -> float:
        return float("inf")  # Ray queues tasks itself until a node has their resources

    def submit(self, run_dir: Path):
        from spintui.profiles.store import read_manifest

        ref = self.task.options(**resources(read_manifest(run_dir).get("config") or {})).remote(str(run_dir))
        self.refs[ref] = run_dir
        return ref

    def finished(self, refs: list, timeout: float) -> list:
        if not refs:
            return []
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=timeout)
        return ready

    def stop(self, ref) -> None:
        """A task still waiting for resources never starts; a running trainer sees the stop request
        and checkpoints (the task outlives the cancel until its trainer exits)."""
        request_stop(self.refs[ref])
        self.ray.cancel(ref)

    def close(self) -> None:
        self.ray.shutdown()
