"""`spintui watch` on a TensorBoard log directory: time to the first frame with data, in a real pty.

    .venv/bin/python benchmarks/bench_watch_tensorboard.py                # 1e5 points over SB3's 10 tags
    .venv/bin/python benchmarks/bench_watch_tensorboard.py --tags 1       # 1e5 points of one tag

The directory is written by torch's SummaryWriter as Stable-Baselines3 writes it (one event per tag
and step: rollout/ep_rew_mean, rollout/ep_len_mean, time/fps and seven train/ tags), `--points`
scalars in all. Each repeat starts `spintui watch DIR` at 120x40 and times the first frame that
holds plotted data (braille cells), right after the same start on a 10-point directory (what
start-up alone costs at that moment); the median and the load average are printed. Nothing is
cached between attaches (only the OS's page cache is warm): every attach parses every event.
`--nice -10` (as root) runs the viewers ahead of other work on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dashboard import attach_times  # noqa: E402

SB3_TAGS = ("rollout/ep_rew_mean", "rollout/ep_len_mean", "time/fps", "train/loss", "train/value_loss",
            "train/policy_gradient_loss", "train/entropy_loss", "train/approx_kl", "train/clip_fraction",
            "train/explained_variance")


def write_log(log_dir: Path, points: int, tags: int) -> Path:
    """A TensorBoard run of `points` scalars over the first `tags` of SB3_TAGS, as SB3 writes them."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(log_dir), flush_secs=3600, max_queue=100_000)
    names = SB3_TAGS[:tags]
    for i in range(points // len(names)):
        step = 2048 * (i + 1)
        for k, name in enumerate(names):
            writer.add_scalar(name, 100.0 * (1 - 1 / (1 + i / 500)) + k, step)
    writer.close()
    return log_dir


def bench(args) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        big = write_log(Path(tmp) / "big" / "PPO_1", args.points, args.tags)
        tiny = write_log(Path(tmp) / "tiny" / "PPO_1", 10, 10)
        size = sum(f.stat().st_size for f in big.iterdir())
        print(f"  wrote {args.points:,} scalars over {args.tags} tags ({size / 1e6:.1f} MB) in "
              f"{time.perf_counter() - t:.1f} s", flush=True)
        found = attach_times(big, tiny, args.repeats, "a 10-point directory")
    times = found["times"]

    def median(values):
        return statistics.median(v for v in values if v is not None)
    return {"points": args.points, "tags": args.tags, "first_frame_s_median": median(times),
            "first_frame_s_min": min(times), "viewer_cpu_s_median": median(found["cpus"]),
            "tiny_first_frame_s_median": median(found["small"]),
            "tiny_viewer_cpu_s_median": median(found["small_cpus"]),
            "load_median": median(found["loads"]), "runs": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=100_000)
    parser.add_argument("--tags", type=int, default=10, choices=range(1, len(SB3_TAGS) + 1), metavar="1-10")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--nice", type=int, default=0, help="change the viewers' nice value (negative: root only), "
                        "to see what an attach costs when other work on the machine yields to it")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.nice:
        os.nice(args.nice)  # the viewers inherit it
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    result = bench(args)
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
