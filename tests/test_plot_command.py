"""`spintui plot`: the figure's data (Line2D arrays, the band's PolyCollection) from runs, experiments
and Spinning Up output directories, grouped by configuration as Spinning Up's plot.py groups seeds."""

from __future__ import annotations

import json

import numpy as np
import pytest
from matplotlib.collections import PolyCollection

from spintui.options import build
from spintui.profiles.curves import smooth
from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import create_run
from spintui.tui.cli import main
from spintui.tui.plot_command import PlotOptions, figure, plot_lines

RETURNS = {  # (gamma, seed) -> test return per epoch
    (0.99, 0): [-900.0, -500.0, -200.0, -150.0],
    (0.99, 1): [-1000.0, -600.0, -300.0, -170.0],
    (0.99, 2): [-800.0, -400.0, -250.0, -130.0],
    (0.98, 0): [-1100.0, -700.0, -450.0, -300.0],
}


def write_run(runs_dir, gamma, seed, test=True):
    run = create_run(runs_dir, kind="train", name=f"g{gamma}_s{seed}", algo="sac", env="Pendulum-v1", seed=seed,
                     config={"env": "Pendulum-v1", "seed": seed, "gamma": gamma})
    with RunWriter(run, heartbeat=False) as w:
        for i, ret in enumerate(RETURNS[(gamma, seed)]):
            stats = {"AverageEpRet": ret - 100, "TotalEnvInteracts": 4000 * (i + 1), "Time": 10.0 * (i + 1) + seed}
            if test:
                stats["AverageTestEpRet"] = ret
            w.epoch(i + 1, 4000 * (i + 1), stats)
    return run


def write_spinningup_dir(root, name, exp, returns):
    out = root / name
    out.mkdir(parents=True)
    rows = ["Epoch\tAverageEpRet\tTotalEnvInteracts\tTime"]
    rows += [f"{i + 1}\t{r}\t{4000 * (i + 1)}\t{5.0 * (i + 1)}" for i, r in enumerate(returns)]
    (out / "progress.txt").write_text("\n".join(rows) + "\n")
    (out / "config.json").write_text(json.dumps({"exp_name": exp, "seed": 0, "env_fn": "<function at 0x1>"}))
    return out


def lines_of(tmp_path, *sources, **options):
    opts = build(PlotOptions, {"sources": list(sources), "runs_dir": str(tmp_path / "runs"), **options})
    fig = figure(plot_lines(opts), opts)
    ax = fig.axes[0]
    return ax.get_lines(), [c for c in ax.collections if isinstance(c, PolyCollection)]


def band_edges(band: PolyCollection, xs) -> tuple[np.ndarray, np.ndarray]:
    """(lower, upper) y of a fill_between band at each x: the lowest and highest vertex there."""
    vertices = band.get_paths()[0].vertices
    at = [vertices[vertices[:, 0] == x, 1] for x in xs]
    return np.array([v.min() for v in at]), np.array([v.max() for v in at])


def test_seeds_become_a_mean_line_with_a_std_band(tmp_path):
    for gamma, seed in RETURNS:
        write_run(tmp_path / "runs", gamma, seed)
    lines, bands = lines_of(tmp_path, str(tmp_path / "runs" / "g*"))
    assert [line.get_label() for line in lines] == ["gamma=0.98", "gamma=0.99 (3 runs)"]  # glob order
    seeds = np.array([RETURNS[(0.99, s)] for s in range(3)])
    np.testing.assert_array_equal(lines[1].get_xdata(), [4000, 8000, 12000, 16000])
    np.testing.assert_allclose(lines[1].get_ydata(), seeds.mean(axis=0), rtol=1e-12)
    np.testing.assert_array_equal(lines[0].get_ydata(), RETURNS[(0.98, 0)])
    assert len(bands) == 1  # a single run has no band
    lower, upper = band_edges(bands[0], lines[1].get_xdata())
    np.testing.assert_allclose(lower, seeds.mean(axis=0) - seeds.std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(upper, seeds.mean(axis=0) + seeds.std(axis=0), rtol=1e-12)


def test_value_xaxis_smooth_select_and_legend(tmp_path):
    for gamma, seed in RETURNS:
        write_run(tmp_path / "runs", gamma, seed)
    lines, _ = lines_of(tmp_path, str(tmp_path / "runs"), value="AverageEpRet", xaxis="time", smooth=3,
                        select="0.99", exclude="s2", legend="tuned")
    assert [line.get_label() for line in lines] == ["tuned (2 runs)"]
    runs = [smooth(np.array(RETURNS[(0.99, s)]) - 100, 3) for s in (0, 1)]
    np.testing.assert_allclose(lines[0].get_ydata(), np.mean(runs, axis=0), rtol=1e-12)
    np.testing.assert_allclose(lines[0].get_xdata(), [10.5, 20.5, 30.5, 40.5])


def test_smoothing_is_spinning_ups_centred_window():
    y = np.array([1.0, 2.0, 3.0, 10.0, 5.0])
    np.testing.assert_allclose(smooth(y, 3), [1.5, 2.0, 5.0, 6.0, 7.5])
    np.testing.assert_array_equal(smooth(y, 1), y)


def test_spinning_up_directories_group_by_exp_name_and_fall_back_to_the_training_return(tmp_path):
    su = tmp_path / "data"
    write_spinningup_dir(su, "ppo_s0", "ppo-hc", [1.0, 2.0, 3.0])
    write_spinningup_dir(su, "ppo_s1", "ppo-hc", [3.0, 4.0, 5.0])
    write_spinningup_dir(su, "vpg_s0", "vpg-hc", [0.0, 1.0, 1.0])
    write_run(tmp_path / "runs", 0.98, 0, test=False)
    lines, bands = lines_of(tmp_path, str(su), "g0.98_s0")
    assert [line.get_label() for line in lines] == ["ppo-hc (2 runs)", "vpg-hc", "sac Pendulum-v1"]
    np.testing.assert_array_equal(lines[0].get_ydata(), [2.0, 3.0, 4.0])
    np.testing.assert_array_equal(lines[2].get_ydata(), np.array(RETURNS[(0.98, 0)]) - 100)
    lower, upper = band_edges(bands[0], lines[0].get_xdata())
    np.testing.assert_array_equal(upper - lower, [2.0, 2.0, 2.0])


@pytest.mark.parametrize("suffix", ["png", "svg", "pdf"])
def test_the_command_writes_the_figure_without_a_display(tmp_path, suffix, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    write_run(tmp_path / "runs", 0.99, 0)
    out = tmp_path / f"fig.{suffix}"
    main(["plot", "g0.99_s0", "--runs-dir", str(tmp_path / "runs"), "-o", str(out)])
    assert out.stat().st_size > 1000
    assert capsys.readouterr().out.strip() == f"{out}: 1 line from 1 run"


@pytest.mark.parametrize("args, fragment", [
    (["-o", "fig.gif"], "must end in .png, .svg, .pdf"),
    (["-o", "missing/fig.png"], "directory missing does not exist"),
    ([], "-o FILE.png"),
    (["-o", "fig.png", "--legend", "a,b"], "--legend has 2 names for 1 lines"),
    (["-o", "fig.png", "--value", "LossZ"], "has no column LossZ"),
    (["-o", "fig.png", "--select", "nothing-matches"], "left no runs"),
    (["-o", "fig.png", "--smooth", "0"], "--smooth must be an integer >= 1"),
])
def test_plot_mistakes_are_one_line_exit_2_and_write_nothing(args, fragment, tmp_path, monkeypatch, capsys):
    write_run(tmp_path / "runs", 0.99, 0)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(["plot", "g0.99_s0", "--runs-dir", str(tmp_path / "runs"), *args])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and len(err.splitlines()) == 1 and fragment in err, err
    assert not list(tmp_path.glob("fig.*"))
