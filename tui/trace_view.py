"""The training dashboard's view of the latest trace (`spintui train --trace`): its top operations.

`trace_text` and `split_lines` are pure (Rich text from a `trace` record, profiles/trace_table.py);
`TraceScreen` is the modal screen the dashboard's `t` key opens.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Static

from spintui.tui.plot import colour
from spintui.tui.profile_data import flops_text

TOP = 20


def _ms(seconds) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    return f"{ms:.3g}" if ms < 1000 else f"{ms:.0f}"


def trace_text(trace: dict | None, width: int, top: int = TOP) -> Text:
    """The latest trace's top operations: name, where, calls, self and total time, share with a bar, FLOPs."""
    text = Text(no_wrap=True, overflow="ellipsis")
    if not trace:
        text.append("no trace in this run yet: train with --trace N (update block N) or --trace N:M",
                    style="dim")
        return text
    blocks = trace.get("blocks") or []
    span = f"{blocks[0]}" if len(blocks) == 2 and blocks[0] == blocks[1] else "-".join(map(str, blocks))
    text.append(f"update block {span}", style="bold")
    text.append(f"  {_ms(trace.get('update_s'))} ms on {trace.get('device', '?')}, {trace.get('update') or ''}  "
                f"{trace.get('file', '')}\n", style="dim")
    name_w = max(16, width - 62)
    text.append(f"{'operation':<{name_w}} {'where':<8} {'calls':>6} {'self ms':>9} {'total ms':>9} "
                f"{'share':>6} {'':<12} {'FLOPs':>7}\n", style="bold")
    for i, row in enumerate((trace.get("rows") or [])[:top]):
        share = row.get("share")
        bar = "█" * int(round(min(1.0, share or 0.0) * 12))
        text.append(f"{row['name'][:name_w]:<{name_w}} {row.get('source', ''):<8} {row.get('calls', 0):>6} "
                    f"{_ms(row.get('self_s')):>9} {_ms(row.get('total_s')):>9} "
                    f"{'-' if share is None else f'{share:.1%}':>6} ")
        text.append(f"{bar:<12}", style=colour(i % 8))
        text.append(f" {flops_text(row.get('flops')):>7}\n")
    return text


def split_lines(split: list[tuple[str, float]], width: int) -> Text:
    """The update phase's largest ops under its Timing row: '  ╰ aten::mm 31%'."""
    text = Text(no_wrap=True, overflow="ellipsis")
    for name, share in split:
        if name == "other":
            continue
        text.append(f"\n  ╰ {name[:max(8, width - 12)]} {share:.0%}", style="dim")
    return text


class TraceScreen(ModalScreen[None]):
    """The latest trace's top operations; Esc, q or t close it."""

    BINDINGS = [Binding("escape,q,t", "dismiss_trace", "close")]

    def __init__(self, trace: dict | None) -> None:
        super().__init__()
        self.trace = trace

    def compose(self) -> ComposeResult:
        yield Static(id="trace-body")

    def on_mount(self) -> None:
        body = self.query_one("#trace-body", Static)
        body.border_title = "Kernels of the latest trace (Esc closes)"
        body.update(trace_text(self.trace, max(80, self.app.size.width - 6)))

    def action_dismiss_trace(self) -> None:
        self.dismiss(None)
