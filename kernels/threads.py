"""Running a CPU kernel's independent work items on torch's intra-op thread count.

The CPU paths (cpu.py, softmax.py) loop over items whose outputs do not overlap: output block-rows
(DSD), block-columns (DDS), stored blocks (SDD) or block-rows of a softmax. `run_items` splits
those items into one contiguous range per thread, balanced by a cost per item (its block count),
and runs each range on a worker of a persistent pool whose threads run torch with one intra-op
thread (``torch.set_num_threads(1)`` in a worker sets that thread's OpenMP and MKL counts only).
So each BLAS call is single-threaded and there is one join per product, instead of a
multi-threaded GEMM per block that ends in a barrier (what torch does inside each small call; on
a loaded machine a barrier waits for the slowest, possibly descheduled, thread every time).

torch releases the GIL inside every op, so the workers' Python loops overlap with each other's
BLAS calls; a loop step (~10 us) is small next to a block's GEMM at the sizes that use this.

With one thread, or less work than `PARALLEL_MIN_WORK`, the items run on the calling thread, as
before this module existed.
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

import torch

# Multiply-adds (or element operations) below which one thread does the whole product: the hand-off
# to the pool and the join cost ~50-100 us.
PARALLEL_MIN_WORK = 1 << 22

_pools: dict[int, ThreadPoolExecutor] = {}
_lock = threading.Lock()


def _single_threaded_worker() -> None:
    torch.get_num_threads()  # torch sets a thread's count from the process-wide one on first use: do it now
    torch.set_num_threads(1)


def _pool(workers: int) -> ThreadPoolExecutor:
    """The pool of `workers` single-threaded workers, started on first use. torch.set_num_threads in
    a worker also sets torch's process-wide default (for threads that start later) and its
    pthreadpool size, so once every worker has started, the caller's count is set again."""
    with _lock:
        pool = _pools.get(workers)
        if pool is None:
            caller_threads = torch.get_num_threads()
            pool = ThreadPoolExecutor(workers, thread_name_prefix="spintui-kernels",
                                      initializer=_single_threaded_worker)
            started = threading.Barrier(workers)
            list(pool.map(lambda _: started.wait(), range(workers)))  # every worker thread runs now
            torch.set_num_threads(caller_threads)
            _pools[workers] = pool
        return pool


def _forget_pools() -> None:  # a forked child has none of the parent's threads
    _pools.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools)


def split(costs: Sequence[int], parts: int) -> list[tuple[int, int]]:
    """Contiguous ranges [start, end) of `costs`' indices, at most `parts`, non-empty, each holding
    about an equal share of the total cost (a range ends once it reaches its share)."""
    n = len(costs)
    parts = max(1, min(parts, n))
    total = sum(costs)
    ranges, start, acc = [], 0, 0
    for i, cost in enumerate(costs):
        acc += cost
        left_parts = parts - len(ranges) - 1
        if left_parts and acc * parts >= total * (len(ranges) + 1) and n - (i + 1) >= left_parts:
            ranges.append((start, i + 1))
            start = i + 1
    if start < n:
        ranges.append((start, n))
    return ranges


def threads_for(work: float) -> int:
    """How many threads a product of `work` multiply-adds runs on: torch's count, or 1 if small."""
    threads = torch.get_num_threads()
    return 1 if threads <= 1 or work < PARALLEL_MIN_WORK else threads


def run_tasks(tasks: Sequence[Callable[[], None]]) -> None:
    """Run `tasks` at once, one per worker of a pool as large as the list, each in the caller's grad
    and inference modes (per-thread settings: inside an autograd Function's forward grad mode is
    off, and out= ops refuse inputs that require grad). Returns when all have finished."""
    if len(tasks) == 1:
        tasks[0]()
        return
    modes = torch.is_grad_enabled(), torch.is_inference_mode_enabled()
    pool = _pool(max(len(tasks), torch.get_num_threads()))
    futures = [pool.submit(_run_in_modes, task, *modes) for task in tasks]
    for future in futures:  # every task finishes before any error is raised: outputs stay consistent
        future.exception()
    for future in futures:
        future.result()


def _run_in_modes(task: Callable[[], None], grad: bool, inference: bool) -> None:
    with torch.inference_mode(inference), torch.set_grad_enabled(grad):
        task()


def run_items(costs: Sequence[int], run: Callable[[int, int], None], work: float) -> None:
    """Call ``run(start, end)`` over ranges that cover ``range(len(costs))``: on the calling thread
    when `threads_for(work)` is 1, else one range per worker thread (single-threaded BLAS each)."""
    if not len(costs):
        return
    ranges = split(costs, threads_for(work))
    run_tasks([functools.partial(run, start, end) for start, end in ranges])
