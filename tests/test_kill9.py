"""A writer killed with SIGKILL at random moments loses no flushed record and corrupts nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

from spintui.profiles.records import iter_jsonl
from spintui.profiles.run_reader import RunReader
from spintui.profiles.store import RunPaths, create_run

WRITER = r"""
import sys, random
from spintui.profiles.run_writer import RunWriter
w = RunWriter(sys.argv[1])  # background flusher on, as in training
rng = random.Random(int(sys.argv[2]))
i = 0
while True:
    w.log("event", seq=i, payload="x" * rng.randrange(0, 3000))
    w.scalar("seq", float(i), i)
    if i % 25 == 24:
        w.flush()
        print(i, flush=True)  # everything up to i is now in the files
    i += 1
"""


def test_sigkill_at_random_moments_keeps_every_flushed_record(tmp_path):
    rng = random.Random(1234)
    for trial in range(12):
        run = create_run(tmp_path, kind="train", name=f"trial{trial}", algo="sac", env="Pendulum-v1", seed=0)
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(run), str(trial)],
                                stdout=subprocess.PIPE, text=True)
        flushed = -1
        first = proc.stdout.readline()  # the writer is up and has flushed once
        assert first, "writer did not start"
        flushed = int(first)
        time.sleep(rng.uniform(0.0, 0.4))
        os.kill(proc.pid, signal.SIGKILL)
        for line in proc.stdout.read().split():
            flushed = max(flushed, int(line))
        proc.wait()

        data = RunPaths(run).metrics.read_bytes()
        lines = data.split(b"\n")
        complete, tail = lines[:-1], lines[-1]
        records = list(iter_jsonl(b"\n".join(complete)))
        # every complete line parses: no corrupt record anywhere but possibly the unterminated tail
        assert len(records) == len([ln for ln in complete if ln.strip()])
        seqs = [r["seq"] for r in records if r.get("kind") == "event"]
        assert seqs == list(range(len(seqs))), "records out of order or missing"
        assert seqs[-1] >= flushed, f"trial {trial}: flushed record {flushed} lost (have {seqs[-1]})"

        update = RunReader(run).poll()  # the reader copes with whatever tail is there
        assert [r["seq"] for r in update.records if r.get("kind") == "event"] == seqs
        values = update.scalars["seq"].values
        assert values.tolist() == [float(i) for i in range(len(values))]
        assert len(values) - 1 >= flushed
        if tail:
            assert not tail.endswith(b"}\n")
