"""The dashboards' modal screens: the key list (?) and the question asked when quitting would leave a
producer the dashboard started still running."""

from __future__ import annotations

from typing import NamedTuple

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

KEY_NAMES = {"question_mark": "?", "plus": "+", "minus": "-", "ctrl+c": "ctrl+c", "down": "↓", "up": "↑",
             "right_square_bracket": "]", "left_square_bracket": "["}


class HelpScreen(ModalScreen[None]):
    """Every key of the dashboard, then what its panels show (`panels`)."""

    BINDINGS = [Binding("escape,q,question_mark", "dismiss_help", "close help")]

    def __init__(self, bindings: list[Binding], panels: str) -> None:
        super().__init__()
        self.key_list = bindings
        self.panels = panels

    def compose(self) -> ComposeResult:
        text = Text()
        text.append("spintui dashboard keys\n\n", style="bold")
        for b in self.key_list:
            keys = ", ".join(KEY_NAMES.get(k, k) for k in b.key.split(","))
            text.append(f"  {keys:<16}", style="bold")
            text.append(f"{b.description}\n")
        text.append(f"\n{self.panels}", style="dim")
        yield Static(text, id="help-body")

    def action_dismiss_help(self) -> None:
        self.dismiss(None)


class QuitText(NamedTuple):
    """What the quit question says about the producer: that it runs, and what stop and detach do."""

    running: str
    stop: str
    detach: str


class QuitDialog(ModalScreen[str]):
    """Closing the dashboard never stops a producer silently: stop, detach or cancel."""

    BINDINGS = [
        Binding("s", "choose('stop')", "stop training"),
        Binding("d", "choose('detach')", "detach"),
        Binding("escape,c", "choose('cancel')", "cancel"),
    ]

    def __init__(self, run_name: str, says: QuitText) -> None:
        super().__init__()
        self.run_name = run_name
        self.says = says

    def compose(self) -> ComposeResult:
        with Vertical(id="quit-body"):
            yield Static(Text.assemble((self.says.running, "bold"), f" ({self.run_name}).\n\n",
                                       f"Stop: {self.says.stop}\n", f"Detach: {self.says.detach}\n"))
            with Horizontal(id="quit-buttons"):
                yield Button("Stop (s)", id="stop", variant="error")
                yield Button("Detach (d)", id="detach", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)
