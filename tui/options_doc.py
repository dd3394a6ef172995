"""The options reference (docs/options.md), written from the same dataclasses as the commands.

    python -m spintui.tui.options_doc > docs/options.md

A test keeps the committed file equal to what this prints.
"""

from __future__ import annotations

import dataclasses
import sys

from spintui.options import accepted, flag_name, format_default


def _default(f: dataclasses.Field) -> str:
    if f.metadata.get("default_text"):
        return f.metadata["default_text"]
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return format_default(f.default_factory())  # type: ignore[misc]
    return "" if f.default in (None, dataclasses.MISSING) else format_default(f.default)


def _table(*classes: type) -> list[str]:
    rows = ["| option | accepted | default | meaning |", "| --- | --- | --- | --- |"]
    seen: set[str] = set()
    for cls in classes:
        for f in dataclasses.fields(cls):
            if f.name in seen or not f.metadata.get("cli", True):
                continue
            seen.add(f.name)
            name = f.name.upper() if f.metadata.get("argument") else flag_name(f)
            cells = [f"`{name}`", accepted(cls, f), f"`{_default(f)}`" if _default(f) else "",
                     f.metadata.get("help", "")]
            rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    return rows


def options_markdown() -> str:
    from spintui.algos.registry import ALGORITHMS
    from spintui.tui.export_command import ExportOptions
    from spintui.tui.plot_command import PlotOptions
    from spintui.tui.profile_command import BlocksparseOptions
    from spintui.tui.profile_train import ProfileTrainOptions
    from spintui.tui.run_commands import EvalOptions, RunsOptions, WatchOptions
    from spintui.tui.train_command import TrainOptions

    lines = ["# Options", "",
             "Every option of every command, with what it accepts; written by "
             "`python -m spintui.tui.options_doc`. A `--config FILE.toml` for `train` takes the same keys "
             "(dashes or underscores), at its top level or in a table named after the algorithm.", ""]
    for spec in ALGORITHMS.values():
        lines += [f"## spintui train {spec.name}", "", spec.summary, "", *_table(spec.config, TrainOptions), ""]
    for title, classes in (("spintui eval", (EvalOptions,)), ("spintui watch", (WatchOptions,)),
                           ("spintui runs", (RunsOptions,)), ("spintui export", (ExportOptions,)),
                           ("spintui plot", (PlotOptions,)), ("spintui profile blocksparse", (BlocksparseOptions,))):
        lines += [f"## {title}", "", *_table(*classes), ""]
    lines += ["## spintui profile train ALGO", "", "A short training run with `--trace` on, shown as a kernel table. "
              "Every option of `spintui train ALGO` above applies too (`--steps` defaults to four update blocks or "
              "two epochs, `--trace` to blocks 2 to 4); besides those:", "", *_table(ProfileTrainOptions), ""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(options_markdown())
