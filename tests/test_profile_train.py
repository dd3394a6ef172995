"""`spintui profile train ALGO`: a short traced training run shown as a kernel table, headless or live."""

import asyncio
import json

import pytest

from spintui.profiles.run_writer import RunWriter
from spintui.profiles.store import create_run
from spintui.profiles.trace_table import VERDICTS, table_rows


def test_profile_train_sac_headless_prints_the_table_and_writes_profile_json(tmp_path, spintui):
    runs = tmp_path / "runs"
    out = spintui("profile", "train", "sac", "--env", "Pendulum-v1", "--headless", "--json", str(tmp_path / "out.json"),
                  "--runs-dir", str(runs), "--name", "base", "--num-test-episodes", "1")
    assert out.returncode == 0, out.stderr[-2000:]
    assert "update blocks 2-4" in out.stdout and "operation" in out.stdout and "share" in out.stdout
    data = json.loads((tmp_path / "out.json").read_text())
    assert (data["schema_version"], data["kind"], data["run"]["name"]) == (1, "spintui.train_profile", "base")
    assert data["config"]["algo"] == "sac" and data["config"]["steps"] == 1200 and data["config"]["trace"] == "2:4"
    assert data["trace"]["file"] == "trace-2-4.json.gz" and (runs / "base" / "trace-2-4.json.gz").is_file()
    rows = data["cases"]
    assert rows and {"name", "source", "calls", "self_s", "total_s", "share", "flops"} <= set(rows[0])
    assert rows[0]["name"] in out.stdout and data["compare"] is None

    again = spintui("profile", "train", "sac", "--env", "Pendulum-v1", "--headless", "--json",
                    str(tmp_path / "again.json"), "--runs-dir", str(runs), "--compare", "latest", "--threshold", "9",
                    "--num-test-episodes", "1")
    # The verdicts themselves are timings (tested on fixed tables in test_trace.py); here: their wiring.
    compared = json.loads((tmp_path / "again.json").read_text())
    verdicts = [r["compare"] for r in compared["cases"]]
    slower = verdicts.count("slower")
    assert compared["compare"]["baseline"] == "base" and compared["compare"]["regressions"] == slower
    assert again.returncode == (1 if slower else 0), again.stderr[-2000:]
    assert set(verdicts) <= set(VERDICTS) and verdicts.count("new") < len(verdicts)  # the same ops, matched
    assert all(r["change"] is not None for r in compared["cases"] if r["compare"] != "new")
    assert "vs base" in again.stdout


@pytest.mark.parametrize("args, fragments", [
    (("sac",), ("--env is required",)),
    (("sac", "--env", "CartPole-v1"), ("CartPole-v1",)),
    (("sac", "--env", "Pendulum-v1", "--trace", "9"), ("--trace", "beyond this run's last", "4 update blocks")),
    (("sac", "--env", "Pendulum-v1", "--trace", "3:1"), ("reversed",)),
    (("sac", "--env", "Pendulum-v1", "--steps", "500"), ("no update block",)),
    (("ppo", "--env", "CartPole-v1", "--compare", "nothing-here"), ("--compare",)),
])
def test_bad_input_is_one_line_and_creates_nothing(tmp_path, spintui_here, args, fragments):
    runs = tmp_path / "runs"
    out = spintui_here("profile", "train", *args, "--headless", "--runs-dir", str(runs))
    out.assert_one_line_error(2, *fragments)
    assert not runs.exists() or not any(runs.iterdir())


def test_compare_refuses_a_run_that_is_not_a_training_profile(tmp_path, spintui_here, recorded_run):
    recorded_run(tmp_path, name="plain")
    out = spintui_here("profile", "train", "sac", "--env", "Pendulum-v1", "--headless", "--runs-dir", str(tmp_path),
                       "--compare", "plain")
    out.assert_one_line_error(2, "--compare", "not a training profile")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain"]


def test_the_profile_dashboard_shows_a_training_profile_sortable(tmp_path, screen_text, wait_for):
    from spintui.tui.profile_dashboard import ProfileDashboard

    rd = create_run(tmp_path, kind="profile", name="prof", algo="sac", benchmark="train", env="Pendulum-v1", seed=0,
                    config={"steps": 1200, "trace": "2:4"}, extra={"profile": {"compare": None}})
    run = RunWriter(rd, heartbeat=False)
    rows = table_rows([{"name": "critic forward+backward", "source": "C update", "calls": 150, "self_s": 0.2},
                       {"name": "aten::index", "calls": 900, "self_s": 0.01, "total_s": 0.012}], update_s=0.25)
    run.log("trace", file="trace-2-4.json.gz", blocks=[2, 4], update_s=0.25, device="cpu", update="compiled C update",
            rows=rows)
    run.episode(1200, -1200.0, 200)
    run.close("finished")

    async def go():
        app = ProfileDashboard([rd], refresh_s=0.05, telemetry=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await wait_for(pilot, lambda: "critic forward+backward" in screen_text(app))
            text = screen_text(app)
            assert "80.0%" in text and "C update" in text and "by self time (o sorts)" in text and "  step " in text
            table = app.query_one("#kernels")
            assert str(table.get_row_at(0)[1]) == "critic forward+backward"
            await pilot.press("o", "o")  # total time, then calls
            await pilot.pause()
            assert str(table.get_row_at(0)[1]) == "aten::index" and "by calls" in screen_text(app)
            await pilot.press("question_mark")
            await pilot.pause()
            assert "sort operations (profile train)" in screen_text(app)
    asyncio.run(go())


def test_an_on_policy_profile_traces_an_epochs_update_and_its_frame_holds_the_rows(tmp_path, spintui):
    out = spintui("profile", "train", "ppo", "--env", "CartPole-v1", "--steps-per-epoch", "400", "--train-v-iters",
                  "5", "--train-pi-iters", "5", "--headless", "--runs-dir", str(tmp_path), "--name", "ppo")
    assert out.returncode == 0, out.stderr[-2000:]
    from spintui.tui.data import RunTail, poll_tails
    from spintui.tui.frames import ProfileFrame, profile_frame
    from spintui.tui.plot_data import ViewSettings

    tails = [RunTail(tmp_path / "ppo")]
    poll_tails(tails)
    frame = profile_frame(tails, ViewSettings(), now=tails[0].start_time + 60)
    assert isinstance(frame, ProfileFrame) and frame.header[0]["algo"] == "ppo"
    assert tails[0].traces[-1]["blocks"] == [2, 2] and tails[0].manifest["config"]["steps"] == 800
    names = {r["name"] for r in frame.kernels}
    assert "aten::addmm" in names or "aten::mm" in names
    assert frame.speedup.title.startswith("Return")
