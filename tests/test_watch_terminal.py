"""`spintui watch` as a user runs it: in a real pty, without a terminal, and how it resolves runs."""

import os
import signal
import subprocess
import sys
import time


class PtyTerminal:
    """`spintui watch ...` on a real pty whose output is read continuously, like a terminal does."""

    def __init__(self, args: list[str], size=(40, 120), env: dict | None = None):
        import fcntl
        import pty
        import struct
        import termios
        import threading

        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", size[0], size[1], 0, 0))
        self.proc = subprocess.Popen([sys.executable, "-m", "spintui.tui.cli", "watch", *args],
                                     stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                     env={**os.environ, "TERM": "xterm-256color", **(env or {})},
                                     preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0))
        os.close(slave)
        self.master = master
        self.output = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        import select

        while True:
            try:
                ready, _, _ = select.select([self.master], [], [], 0.1)
                if ready:
                    chunk = os.read(self.master, 65536)
                    if not chunk:
                        return
                    self.output += chunk
            except (OSError, ValueError):
                return

    def wait_for(self, predicate, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(bytes(self.output)):
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        try:
            os.close(self.master)
        except OSError:
            pass


BRAILLE_UTF8 = (b"\xe2\xa0", b"\xe2\xa1", b"\xe2\xa2", b"\xe2\xa3")


def colours_used(output: bytes) -> tuple[set, set]:
    """(grey, other) colours in the SGR sequences of a terminal stream (256-colour and truecolor)."""
    import re

    grey, other = set(), set()
    for params in re.findall(rb"\x1b\[([0-9;]*)m", output):
        for m in re.finditer(rb"[34]8;5;(\d+)", params):
            n = int(m.group(1))
            cube = n - 16
            is_grey = n >= 232 or n in (0, 7, 8, 15) or (
                16 <= n <= 231 and cube // 36 == (cube // 6) % 6 == cube % 6)
            (grey if is_grey else other).add(n)
        for m in re.finditer(rb"[34]8;2;(\d+);(\d+);(\d+)", params):
            rgb = tuple(int(v) for v in m.groups())
            (grey if len(set(rgb)) == 1 else other).add(rgb)
    return grey, other


def test_watch_in_a_real_terminal_quits_and_survives_a_hangup(tmp_path, recorded_run):
    rd = recorded_run(tmp_path, name="finished-run")
    term = PtyTerminal(["--runs-dir", str(tmp_path), "latest"])
    try:
        assert term.wait_for(lambda b: any(m in b for m in BRAILLE_UTF8) and b"Return" in b and b"finished" in b), \
            bytes(term.output[-500:])
        assert colours_used(bytes(term.output))[1], "curves are drawn in colour"
        os.write(term.master, b"q")
        assert term.proc.wait(timeout=15) == 0
    finally:
        term.close()

    # NO_COLOR: greys only. Then the terminal goes away (SSH dropped): the viewer exits by itself.
    term = PtyTerminal([str(rd)], env={"NO_COLOR": "1"})
    try:
        assert term.wait_for(lambda b: any(m in b for m in BRAILLE_UTF8) and b"Return" in b)
        grey, other = colours_used(bytes(term.output))
        assert grey and not other, other
        os.close(term.master)
        term.proc.send_signal(signal.SIGHUP)  # what the kernel sends the session when its terminal closes
        assert term.proc.wait(timeout=15) == 0
    finally:
        term.close()


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "spintui.tui.cli", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd)


def test_watch_errors_are_one_line(tmp_path, recorded_run):
    recorded_run(tmp_path, name="alpha", steps=100)
    for args, expected in (
        (["watch", "--runs-dir", str(tmp_path), "nosuchrun"], "no run 'nosuchrun'"),
        (["watch", "--runs-dir", str(tmp_path), "zzz*"], "no runs match 'zzz*'"),
        (["watch", "--runs-dir", str(tmp_path / "empty")], "no runs in"),
    ):
        res = cli(*args)
        assert res.returncode == 1, res.stderr
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0] and "Traceback" not in res.stderr


def test_watch_without_a_terminal_follows_headless(tmp_path, recorded_run):
    recorded_run(tmp_path, name="alpha", steps=100)
    recorded_run(tmp_path, name="beta", steps=100)
    res = cli("watch", "--runs-dir", str(tmp_path), "alpha")
    assert res.returncode == 0 and "finished: 100 steps" in res.stdout
    res = cli("watch", "--runs-dir", str(tmp_path), "*")  # several runs: their group table, once (all ended)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("2 runs: finished") == 1 and "sac Pendulum-v1" in res.stdout, res.stdout


def test_watch_resolves_globs_names_and_paths(tmp_path, recorded_run):
    from spintui.profiles.runs import resolve_watch_runs

    a = recorded_run(tmp_path, name="sac-s0", steps=10)
    b = recorded_run(tmp_path, name="sac-s1", steps=10)
    c = recorded_run(tmp_path, name="other", steps=10)
    assert resolve_watch_runs(["sac-*"], tmp_path) == [a, b]
    assert resolve_watch_runs([str(tmp_path / "sac-s*"), "sac-s0", "latest"], tmp_path) == [a, b, c]
    assert resolve_watch_runs([str(c)], tmp_path) == [c]
