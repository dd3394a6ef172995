"""The typed option system: values checked against each field's type, range and choices, the same
way for the command line and TOML, before anything is created."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from spintui.algos.registry import ALGORITHMS
from spintui.errors import ConfigError
from spintui.options import AT_LEAST_1, UNIT, Range, accepted, build, flag_name, option, to_dict


@dataclass
class Example:
    name: str = option("", "A name.")
    count: int = option(3, "How many.", range=AT_LEAST_1)
    rate: float = option(0.5, "A fraction.", range=UNIT)
    open_rate: float = option(0.5, "Strictly inside.", range=Range(0, 1, lo_open=True, hi_open=True))
    mode: Literal["fast", "slow"] = option("fast", "Which way.")
    alpha: float | Literal["auto"] = option(0.2, "A number or auto.", range=Range(0))
    sizes: tuple[int, ...] = option((4, 4), "Widths.", range=AT_LEAST_1)
    limit: int | None = option(None, "Optional.", range=AT_LEAST_1)
    path: Path | None = option(None, "A file.")
    flag: bool = option(False, "A switch.")
    words: list[str] = option(["a"], "Words.")
    kinds: tuple[Literal["x", "y", "z"], ...] = option(("x",), "Some of three words.")

    def check(self) -> None:
        if self.limit is not None and self.limit < self.count:
            raise ConfigError(f"--limit must be at least --count = {self.count}, got {self.limit}")


def test_values_from_text_and_from_toml_types_agree():
    from_text = build(Example, {"count": "7", "rate": "0.25", "mode": "slow", "alpha": "auto",
                                "sizes": "8, 16", "limit": "9", "path": "x.toml", "flag": "true", "kinds": "z, x,z"})
    from_toml = build(Example, {"count": 7, "rate": 0.25, "mode": "slow", "alpha": "auto",
                                "sizes": [8, 16], "limit": 9, "path": "x.toml", "flag": True, "kinds": ["z", "x"]})
    assert from_text == from_toml
    assert from_text.kinds == ("z", "x")  # in the order given, each once
    assert (from_text.count, from_text.rate, from_text.sizes, from_text.path) == (7, 0.25, (8, 16), Path("x.toml"))
    assert build(Example, {"alpha": "0.1"}).alpha == 0.1
    assert build(Example, {"count": "1e3"}).count == 1000
    assert build(Example, {"limit": "none"}).limit is None


@pytest.mark.parametrize("key, value, fragment", [
    ("count", "0", "--count must be an integer >= 1, got '0'"),
    ("count", "2.5", "--count must be an integer >= 1, got '2.5'"),
    ("count", True, "--count must be an integer"),
    ("rate", "1.5", "--rate must be a number in [0, 1], got '1.5'"),
    ("rate", "nan", "--rate must be a number in [0, 1], got 'nan'"),
    ("rate", "inf", "got 'inf'"),
    ("open_rate", "1", "--open-rate must be a number in (0, 1), got '1'"),
    ("open_rate", 0.0, "--open-rate must be a number in (0, 1), got 0.0"),
    ("alpha", "-1", "--alpha must be a number >= 0 or auto, got '-1'"),
    ("alpha", "automatic", "--alpha must be a number >= 0 or auto"),
    ("sizes", "4,0", "--sizes must be comma-separated integers >= 1, e.g. 256,256, got '4,0'"),
    ("sizes", "", "--sizes must be comma-separated integers"),
    ("sizes", "a,b", "got 'a,b'"),
    ("limit", "0", "--limit must be an integer >= 1 or none, got '0'"),
    ("flag", "maybe", "--flag must be true or false"),
    ("mode", "medium", "--mode must be one of fast, slow, got 'medium'"),
    ("name", 3, "--name must be text, got 3"),
    ("kinds", "x,w", "--kinds must be comma-separated words from x, y, z, got 'x,w'"),
    ("kinds", "", "--kinds must be comma-separated words from x, y, z"),
])
def test_bad_values_name_the_option_the_value_and_what_is_accepted(key, value, fragment):
    with pytest.raises(ConfigError) as info:
        build(Example, {key: value})
    assert fragment in str(info.value)
    assert len(str(info.value).splitlines()) == 1


def test_unknown_keys_suggest_the_closest_and_list_the_accepted():
    with pytest.raises(ConfigError, match=r"no setting 'cout' \(did you mean count\?\); accepted: name, count"):
        build(Example, {"cout": 1})


def test_check_runs_after_the_fields_and_dashes_equal_underscores():
    with pytest.raises(ConfigError, match="--limit must be at least --count = 5"):
        build(Example, {"count": 5, "limit": 2})
    assert build(Example, {"open-rate": "0.3"}).open_rate == 0.3


def test_to_dict_is_json_ready():
    values = to_dict(build(Example, {"sizes": "2,3", "path": "p"}))
    assert values["sizes"] == [2, 3] and values["path"] == "p" and values["alpha"] == 0.2
    assert values["kinds"] == ["x"]


def _outside(rng: Range, integer: bool) -> list:
    """Values just outside a range, as a user would type them."""
    out = []
    step = 1 if integer else 1e-9
    if rng.lo is not None:
        out.append(rng.lo if rng.lo_open else rng.lo - step)
    if rng.hi is not None:
        out.append(rng.hi if rng.hi_open else rng.hi + step)
    return [str(int(v)) if integer else repr(float(v)) for v in out]


def _cases():
    for spec in ALGORITHMS.values():
        for f in dataclasses.fields(spec.config):
            rng = f.metadata.get("range")
            if rng is None:
                continue
            integer = "int" in str(f.type) and "float" not in str(f.type)
            for value in _outside(rng, integer):
                yield pytest.param(spec.name, f, value, id=f"{spec.name}-{f.name}-{value}")


def test_every_algorithm_field_is_documented_with_a_range_or_choices():
    for spec in ALGORITHMS.values():
        for f in dataclasses.fields(spec.config):
            assert f.metadata.get("help"), (spec.name, f.name)
            described = accepted(spec.config, f)
            assert f.metadata.get("range") is not None or "one of" in described \
                or f.name in ("env", "env_kwargs", "tensorboard", "trace"), \
                (spec.name, f.name, described)


@pytest.mark.parametrize("algo, field, value", list(_cases()))
def test_every_out_of_range_hyperparameter_is_refused_before_a_run_exists(algo, field, value, tmp_path,
                                                                          spintui_here):
    env = "CartPole-v1" if "Discrete" in ALGORITHMS[algo].action_spaces else "Pendulum-v1"
    err = spintui_here("train", algo, "--env", env, flag_name(field), value, "--runs-dir", str(tmp_path),
                       "--headless").assert_one_line_error(2, f"spintui: error: {flag_name(field)} must be ", value)
    assert err.startswith(f"spintui: error: {flag_name(field)} must be "), err
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("text", ["nan", "inf", "-inf"])
def test_non_finite_learning_rates_are_refused(text, tmp_path, spintui_here):
    spintui_here("train", "sac", "--env", "Pendulum-v1", "--lr", text, "--runs-dir", str(tmp_path)
                 ).assert_one_line_error(2, "--lr must be a number in (0, 1]")
    assert not any(tmp_path.iterdir())


def test_toml_values_are_checked_like_the_command_line(tmp_path, spintui_here):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[ppo]\nclip_ratio = -1\n")
    spintui_here("train", "ppo", "--env", "CartPole-v1", "--config", str(cfg), "--runs-dir", str(tmp_path / "runs")
                 ).assert_one_line_error(2, "--clip-ratio must be a number in (0, 1), got -1")
    assert not (tmp_path / "runs").exists()


def test_help_lists_choices_ranges_and_defaults_one_way(spintui_here, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    monkeypatch.setenv("TERMINAL_WIDTH", "400")
    out = " ".join(spintui_here("train", "sac", "--help").stdout.split())
    assert "<auto|cpu|cuda>" in out and "<auto|native|compile|torch>" in out
    assert "FLOAT|auto" in out
    assert "Range: [0, 1]." in out and "Range: (0, 1]." in out  # brackets survive the help renderer
    assert "[default: 0.99]" in out and "[default: 256,256]" in out
    assert "(default:" not in out


def test_the_options_reference_is_current():
    from spintui.tui.options_doc import options_markdown

    committed = (Path(__file__).resolve().parents[1] / "docs" / "options.md").read_text()
    assert committed == options_markdown(), "run: python -m spintui.tui.options_doc > docs/options.md"
