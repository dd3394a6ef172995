"""The training dashboard's view of the latest trace (`spintui train --trace`): its top operations,
as profile_data.trace_text writes them, in the modal screen the dashboard's `t` key opens."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Static

from spintui.tui.profile_data import trace_text


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
