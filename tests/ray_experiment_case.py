"""Run inside a fresh network namespace (tests/test_ray.py): a real Ray head on 127.0.0.1 with 2 CPUs,
a small grid submitted to it through `spintui train --ray`, then the head is stopped.

    unshare --net python tests/ray_experiment_case.py RUNS_DIR

Prints one JSON line: the CLI's exit code, stdout and stderr. In a namespace of its own only the
loopback interface exists, so Ray's processes can reach nothing but this machine's 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

PORT = "6391"


def main() -> int:
    runs_dir = Path(sys.argv[1])
    bin_dir = Path(sys.executable).parent
    ray = str(bin_dir / "ray")
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", NO_COLOR="1")
    subprocess.run([ray, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", PORT, "--num-cpus", "2",
                    "--include-dashboard", "false", "--disable-usage-stats"], check=True, env=env,
                   capture_output=True, timeout=180)
    try:
        extra = sys.argv[2:]
        out = subprocess.run([sys.executable, "-m", "spintui", "train", "sac", "--env", "Pendulum-v1",
                              "--threads", "1", "--steps", "200", "--steps-per-epoch", "100",
                              "--num-test-episodes", "1", "--max-ep-len", "50", "--hidden-sizes", "16,16",
                              "--start-steps", "50", "--update-after", "50", "--seed", "0,1", "--name", "on-ray",
                              "--ray", f"127.0.0.1:{PORT}", "--headless", "--runs-dir", str(runs_dir), *extra],
                             capture_output=True, text=True, env=env, timeout=400)
        print(json.dumps({"code": out.returncode, "stdout": out.stdout, "stderr": out.stderr}))
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, env=env, timeout=120)
    return 0


if __name__ == "__main__":
    sys.exit(main())
