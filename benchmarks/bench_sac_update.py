"""Where one SAC update's time goes on this CPU: eager and compiled-C updates, their matmuls alone, torch.compile.

    .venv/bin/python benchmarks/bench_sac_update.py [--rounds 5] [--compile default,max-autotune-no-cudagraphs]

Pendulum-v1 shapes at Spinning Up's defaults (batch 100, 256x256 ReLU nets, twin critics), one
torch thread. Per round, in this order: a block of 50 updates of spintui's SAC (`SAC.update`, as
the trainer calls it with `--update torch`), the same block through the compiled C update
(`--update native`, the CPU default; skipped where it cannot run), the sixteen matmuls of one update alone (the FLOP floor: 12 as 6 batched
matmuls over the two critics, 4 for the actor) repeated 50 times, and the functional update step
(`offpolicy_step.py`, what `--update compile` runs) uncompiled and compiled whole
(`torch.compile(fullgraph=True)`) for each `--compile` mode. Prints the median
milliseconds per update of each, the compile time, and a compiled/eager ratio (above 1: slower).
Needs a C++ compiler for `--compile`; `--compile none` skips it.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

BATCH, WIDTH, BLOCK = 100, 256, 50


def make_agent(update: str = "torch"):
    import gymnasium as gym

    from spintui.algos.config import SACConfig
    from spintui.algos.replay import ReplayBuffer
    from spintui.algos.sac import SAC

    env = gym.make("Pendulum-v1")
    agent = SAC(SACConfig(env="Pendulum-v1", update=update), env.observation_space, env.action_space,
                torch.device("cpu"))
    buffer = ReplayBuffer(3, 1, 100_000, torch.device("cpu"))
    rng = np.random.default_rng(0)
    for _ in range(5_000):
        buffer.store(rng.normal(size=3), rng.uniform(-2, 2, size=1), -rng.uniform(0, 16), rng.normal(size=3), False)
    return agent, buffer


def matmuls_of_one_update():
    """The update's sixteen WIDTH x WIDTH matmuls at batch 100 (the input and output layers are tiny)."""
    x2, w2, g2 = torch.randn(2, BATCH, WIDTH), torch.randn(2, WIDTH, WIDTH), torch.randn(2, BATCH, WIDTH)
    x, w, g = torch.randn(BATCH, WIDTH), torch.randn(WIDTH, WIDTH), torch.randn(BATCH, WIDTH)

    def run():
        for _ in range(3):  # critics forward: Q(o, a), Q_targ(o', a'), Q(o, pi(o))
            torch.bmm(x2, w2)
        torch.bmm(x2.mT, g2)  # critics' weight gradient
        for _ in range(2):  # critics' input gradient: LossQ, and LossPi through the frozen critics
            torch.bmm(g2, w2.mT)
        for _ in range(2):  # actor forward: pi(o'), pi(o)
            torch.mm(x, w)
        torch.mm(x.mT, g)  # actor's weight gradient
        torch.mm(g, w.mT)  # actor's input gradient

    return run


def ms_per_update(run_block) -> float:
    """Milliseconds per update of one call of `run_block`, which does BLOCK updates."""
    start = time.perf_counter()
    run_block()
    return (time.perf_counter() - start) / BLOCK * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compile", default="default", help="comma-separated torch.compile modes, or none")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    modes = [] if args.compile == "none" else [m.strip() for m in args.compile.split(",") if m.strip()]

    agent, buffer = make_agent()
    batches = buffer.sample_block(BLOCK, BATCH)
    discount = agent.cfg.gamma * (1 - batches[4])

    def updates(update_once):
        def run():
            for j in range(BLOCK):
                update_once(batches[0][j], batches[1][j], batches[2][j], batches[3][j], discount[j])
        return run

    variants = {"spintui update (eager)": updates(agent.update_once)}
    from spintui.algos import native

    if native.available()[0]:
        compiled_c, _ = make_agent("native")
        variants["spintui update (native C)"] = lambda: compiled_c.update(*batches)
    compile_seconds = {}
    if modes:
        from spintui.algos.offpolicy_paths import CompiledUpdate

        functional, _ = make_agent("torch")
        plain = CompiledUpdate("sac", functional, torch.device("cpu"), compile=False)
        noise = torch.randn(BLOCK, 2, BATCH, 1)
        variants["functional step (uncompiled)"] = lambda: plain.block(*batches[:4], discount, noise)
    for mode in modes:
        whole, _ = make_agent("torch")
        compiled = CompiledUpdate("sac", whole, torch.device("cpu"))
        if mode != "default":
            from spintui.algos.offpolicy_step import sac_step_

            compiled.fn = torch.compile(sac_step_, mode=mode, fullgraph=True, dynamic=False)
        compile_seconds[mode] = compiled.warm_up(BATCH, 3, 1)
        variants[f"functional step torch.compile {mode}"] = (
            lambda c=compiled: c.block(*batches[:4], discount, noise))
    matmuls = matmuls_of_one_update()

    def matmul_block():
        for _ in range(BLOCK):
            matmuls()

    variants["its 16 matmuls alone"] = matmul_block

    for fn in variants.values():  # warm-up
        fn()
    results = {name: [] for name in variants}
    for r in range(args.rounds):
        for name, fn in variants.items():
            results[name].append(ms_per_update(fn))
        print(f"round {r + 1}: " + ", ".join(f"{name} {vals[-1]:.2f}" for name, vals in results.items()), flush=True)

    eager = statistics.median(results["spintui update (eager)"])
    print(f"\nmedian ms per update over {args.rounds} rounds of {BLOCK} (1 torch thread):")
    width = max(map(len, results))
    for name, vals in results.items():
        med = statistics.median(vals)
        extra = f"  ({med / eager:.2f}x eager)" if name != "spintui update (eager)" else ""
        print(f"  {name:{width}s} {med:6.2f}{extra}")
    for mode, seconds in compile_seconds.items():
        print(f"  compile time ({mode}): {seconds:.1f} s")


if __name__ == "__main__":
    main()
