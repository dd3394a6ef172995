"""`spintui train --trace`: the captured blocks, the trace file, the kernel table and the C update's phases."""

import asyncio
import gzip
import json
import subprocess
import sys
import textwrap

import pytest

from spintui.algos import native
from spintui.algos.trace import check_trace, parse_trace
from spintui.errors import ConfigError
from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import create_run
from spintui.profiles.trace_table import compare_rows, latest_trace, table_rows, update_split
from spintui.tui.profile_data import trace_text

# Pendulum with updates from step 100, every 50 steps: blocks at steps 100, 150, ..., 550 (10 blocks)
SHORT = ("--env", "Pendulum-v1", "--steps", "600", "--update-after", "100", "--start-steps", "100",
         "--num-test-episodes", "1", "--max-ep-len", "100", "--threads", "1", "--headless")


def test_trace_specs_and_their_checks():
    assert parse_trace("3") == (3, 3) and parse_trace(" 2:5 ") == (2, 5)
    assert check_trace("2:2", 10) == "2" and check_trace("1:10", 10) == "1:10"
    for bad, fragment in (("0", "count from 1"), ("-2", "count from 1"), ("5:3", "reversed"),
                          ("x", "expected N or N:M"), ("11", "beyond this run's last; it does 10 update blocks")):
        with pytest.raises(ConfigError, match=fragment):
            check_trace(bad, 10)


@pytest.mark.parametrize("value, fragment", [
    ("11", "block 11 is beyond this run's last; it does 10 update blocks"),
    ("4:2", "reversed"), ("-1", "count from 1"), ("1:x", "expected N or N:M")])
def test_bad_trace_is_one_line_and_creates_nothing(tmp_path, spintui_here, value, fragment):
    runs = tmp_path / "runs"
    out = spintui_here("train", "sac", *SHORT, f"--trace={value}", "--runs-dir", str(runs))
    out.assert_one_line_error(2, "--trace", fragment)
    assert not runs.exists()


@pytest.fixture(scope="module")
def traced_run(tmp_path_factory):
    """A SAC run on the CPU (the compiled update where it builds) with blocks 2 to 3 traced."""
    runs = tmp_path_factory.mktemp("runs")
    out = subprocess.run([sys.executable, "-m", "spintui", "train", "sac", *SHORT, "--trace", "2:3",
                          "--runs-dir", str(runs), "--name", "traced"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return runs / "traced"


def test_a_traced_run_logs_its_kernel_table_and_a_chrome_trace(traced_run):
    from spintui.profiles.run_reader import RunReader

    records = RunReader(traced_run).poll().records
    trace = latest_trace(records)
    assert trace["blocks"] == [2, 3] and trace["file"] == "trace-2-3.json.gz" and trace["update_s"] > 0
    rows = trace["rows"]
    assert rows == sorted(rows, key=lambda r: -r["self_s"])
    assert all(r["calls"] > 0 and r["total_s"] >= r["self_s"] >= 0 for r in rows)
    assert 0.5 < sum(r["share"] for r in rows) < 1.05, "the rows account for most of the update's time"
    events = [r["message"] for r in records if r["kind"] == "event"]
    assert any(m.startswith("trace of update blocks 2 to 3: trace-2-3.json.gz") for m in events)

    with gzip.open(traced_run / "trace-2-3.json.gz", "rt") as f:
        chrome = json.load(f)  # Chrome trace JSON, as Perfetto and chrome://tracing open it
    spans = [e for e in chrome["traceEvents"] if e.get("name", "").startswith("update block ")]
    assert sorted(e["name"] for e in spans) == ["update block 2", "update block 3"]
    assert all(e["ph"] == "X" and e["dur"] > 0 for e in spans)

    if native.available()[0]:  # the compiled update: its own phases take the opaque call's place
        c_rows = {r["name"]: r for r in rows if r["source"] == "C update"}
        assert set(c_rows) == {"critic forward+backward", "actor forward+backward",
                               "backup (target actor and critics)", "Adam", "Polyak"}  # alpha is fixed: no temperature
        assert c_rows["critic forward+backward"]["calls"] == 100  # 50 updates in each of 2 blocks
        assert c_rows["Adam"]["calls"] == 200  # critic and actor, every update
        assert sum(r["share"] for r in c_rows.values()) > 0.5
        slices = [e for e in chrome["traceEvents"] if e.get("name", "").startswith("C update: ")]
        assert len(slices) == 2 * len(c_rows)
        for span in spans:  # each block's phases lie inside its span
            inside = [e for e in slices if span["ts"] <= e["ts"] and e["ts"] + e["dur"] <= span["ts"] + span["dur"] + 1]
            assert len(inside) == len(c_rows)


def test_the_eager_update_is_traced_by_operator_with_flops(tmp_path, spintui):
    out = spintui("train", "td3", *SHORT, "--update", "torch", "--trace", "1", "--runs-dir", str(tmp_path),
                  "--name", "eager")
    assert out.returncode == 0, out.stderr[-2000:]
    from spintui.profiles.run_reader import RunReader

    rows = latest_trace(RunReader(tmp_path / "eager").poll().records)["rows"]
    names = {r["name"] for r in rows}
    assert {"aten::mm", "aten::addmm"} & names and not [r for r in rows if r["source"] == "C update"]
    assert any(r["flops"] for r in rows if r["name"] in ("aten::mm", "aten::addmm"))


def test_tracing_off_never_loads_the_capture(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        import torch.autograd.profiler as ap
        import torch.profiler as tp
        from spintui.algos.config import config_to_dict, make_config
        from spintui.algos.launch import train_run
        from spintui.profiles.store import create_run
        cfg = make_config("sac", dict(env="Pendulum-v1", steps=300, update_after=100, start_steps=100,
                                      num_test_episodes=0, threads=1))
        rd = create_run({str(tmp_path)!r}, kind="train", algo="sac", env="Pendulum-v1", config=config_to_dict(cfg))
        seen = []
        def spy(cls):
            real = cls.__init__
            def init(self, *a, **k):
                seen.append(cls)
                return real(self, *a, **k)
            cls.__init__ = init
        spy(ap.profile)
        spy(tp.profile)
        print(train_run(rd), "spintui.algos.trace_capture" in sys.modules, bool(seen))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["finished", "False", "False"], out.stderr[-2000:]


def test_rows_split_and_compare_are_pure_functions():
    ops = [{"name": "aten::mm", "calls": 10, "self_s": 0.004, "total_s": 0.004, "flops": 2_000_000},
           {"name": "aten::add_", "calls": 20, "self_s": 0.001, "total_s": 0.001},
           {"name": "unused", "calls": 0, "self_s": 0.0}]
    rows = table_rows(ops, update_s=0.01)
    assert [(r["name"], r["share"]) for r in rows] == [("aten::mm", 0.4), ("aten::add_", 0.1)]
    assert update_split({"rows": rows}, 1) == [("aten::mm", 0.4), ("other", 0.6)]
    base = table_rows([{**ops[0], "self_s": 0.001}, {**ops[1], "self_s": 0.00099}], update_s=0.01)
    verdicts = compare_rows(rows, base, threshold=0.25)
    assert [r["compare"] for r in verdicts["cases"]] == ["slower", "same"] and verdicts["regressions"] == 1
    assert [r["compare"] for r in compare_rows(base, rows, 0.25)["cases"]] == ["faster", "same"]
    tiny = table_rows([{**ops[0], "self_s": 4e-6}], update_s=0.01)  # 0.04% of the update
    assert compare_rows(tiny, table_rows([{**ops[0], "self_s": 4e-5}], update_s=0.01), 0.25)["cases"][0][
        "compare"] == "small"
    text = str(trace_text({"rows": rows, "blocks": [2, 2], "update_s": 0.01, "device": "cpu"}, 100))
    assert "update block 2" in text and "aten::mm" in text and "40.0%" in text and "2M" in text


def _run_with_trace(tmp_path, recorded_run):
    rd = recorded_run(tmp_path)
    run = RunWriter(rd, heartbeat=False, claim=False)
    rows = table_rows([{"name": "critic forward+backward", "source": "C update", "calls": 50, "self_s": 0.05},
                       {"name": "actor forward+backward", "source": "C update", "calls": 50, "self_s": 0.03},
                       {"name": "aten::index", "calls": 2, "self_s": 0.001}], update_s=0.1)
    run.log("trace", file="trace-2.json.gz", blocks=[2, 2], update_s=0.1, device="cpu",
            update="compiled C update", rows=rows)
    run.close("finished")
    return rd


def test_the_train_frame_carries_the_latest_trace_and_the_update_split(tmp_path, recorded_run):
    from spintui.tui.data import RunTail, poll_tails
    from spintui.tui.frames import train_frame
    from spintui.tui.plot_data import ViewSettings

    tails = [RunTail(_run_with_trace(tmp_path, recorded_run))]
    poll_tails(tails)
    frame = train_frame(tails, ViewSettings(), now=tails[0].start_time + 10)
    assert frame.trace["file"] == "trace-2.json.gz"
    assert frame.update_split[:2] == [("critic forward+backward", 0.5), ("actor forward+backward", 0.3)]


def test_the_dashboard_shows_the_kernels_with_one_key(tmp_path, recorded_run, screen_text, wait_for):
    from spintui.tui.train_dashboard import TrainDashboard

    rd = _run_with_trace(tmp_path, recorded_run)

    async def go():
        app = TrainDashboard([rd], refresh_s=0.05, telemetry=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: app.frame is not None and app.frame.trace is not None)
            await pilot.pause(0.2)
            text = screen_text(app)
            assert "╰ critic forward+backward 50%" in text and "t kernels" in text
            await pilot.press("question_mark")
            await pilot.pause()
            assert "kernels of the latest trace" in screen_text(app)
            await pilot.press("escape")
            await pilot.press("t")
            await wait_for(pilot, lambda: "update block 2" in screen_text(app))
            text = screen_text(app)
            assert "critic forward+backward" in text and "C update" in text and "50.0%" in text
            await pilot.press("escape")
            await pilot.pause()
            assert "update block 2" not in screen_text(app)
    asyncio.run(go())


def test_profiler_averages_become_rows_with_device_kernels_timed_on_the_device():
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    from spintui.algos.trace_capture import op_totals

    def avg(key, device, **times):
        base = dict(count=4, self_cpu_time_total=0, cpu_time_total=0, self_device_time_total=0,
                    device_time_total=0, flops=0)
        return SimpleNamespace(key=key, device_type=device, **{**base, **times})

    ops = op_totals([avg("aten::mm", DeviceType.CPU, self_cpu_time_total=40, cpu_time_total=90, flops=800),
                     avg("ampere_sgemm_32x32", DeviceType.CUDA, self_device_time_total=300, device_time_total=300),
                     avg("update block 2", DeviceType.CPU, self_cpu_time_total=5000, cpu_time_total=9000)])
    assert ops == [
        {"name": "aten::mm", "source": "cpu", "calls": 4, "self_s": 40e-6, "total_s": 90e-6, "flops": 800},
        {"name": "ampere_sgemm_32x32", "source": "cuda", "calls": 4, "self_s": 300e-6, "total_s": 300e-6,
         "flops": None}]
