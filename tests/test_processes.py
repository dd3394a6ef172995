"""Producer processes: starting one in its own session, asking it to stop, and its signal handlers."""

import os
import signal
import subprocess
import sys
import threading

import pytest

from spintui.profiles.processes import (
    install_stop_handlers,
    producer_main,
    request_clean_stop,
    restore_handlers,
    start_producer,
    wait_for_exit,
)
from spintui.profiles.store import create_run


class Writer:
    """What the handlers need of a RunWriter."""

    def __init__(self) -> None:
        self.stop_requested = False

    def request_stop(self) -> None:
        self.stop_requested = True


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_producer_runs_in_its_own_session_and_logs_to_the_run(tmp_path):
    rd = create_run(tmp_path, kind="train", algo="sac", env="Pendulum-v1", seed=0)
    proc = start_producer(rd, "platform")  # `python -m platform RUN_DIR` prints the platform and exits
    assert proc.wait(timeout=30) == 0
    assert (rd / "output.log").read_text().strip()
    proc = start_producer(rd, "this_module_does_not_exist")
    try:
        assert os.getsid(proc.pid) == proc.pid, "its own session: it outlives the terminal"
    finally:
        proc.wait(timeout=30)
    assert "No module named this_module_does_not_exist" in (rd / "output.log").read_text()


def test_a_clean_stop_leaves_the_control_file_and_signals_the_process(tmp_path):
    rd = create_run(tmp_path, kind="train", algo="sac", env="Pendulum-v1", seed=0)
    proc = sleeper()
    try:
        request_clean_stop(rd, proc)
        assert wait_for_exit(proc, timeout_s=10) and proc.returncode == -signal.SIGTERM
        assert (rd / "control" / "stop").exists()
        request_clean_stop(rd, proc)  # it has exited: only the control file, no error
    finally:
        proc.kill()
        proc.wait()


def test_waiting_ends_at_the_timeout_or_when_cancelled():
    proc = sleeper()
    try:
        assert not wait_for_exit(proc, timeout_s=0.2)
        cancel = threading.Event()
        cancel.set()
        assert not wait_for_exit(proc, timeout_s=30, cancel=cancel)
    finally:
        proc.kill()
        proc.wait()


def test_a_producers_exit_code(capsys):
    def interrupted(run_dir):
        raise KeyboardInterrupt

    def broken(run_dir):
        raise RuntimeError("no such run")

    assert producer_main("spintui.algos.launch", print, []) == 2
    assert capsys.readouterr().err == "usage: python -m spintui.algos.launch RUN_DIR\n"
    assert producer_main("m", print, ["runs/a"]) == 0 and capsys.readouterr().out == "runs/a\n"
    assert producer_main("m", lambda run_dir: 3, ["runs/a"]) == 3
    assert producer_main("m", interrupted, ["runs/a"]) == 130
    assert producer_main("m", broken, ["runs/a"]) == 1
    assert "RuntimeError: no such run" in capsys.readouterr().err, "the traceback goes to the run's log"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signals_ask_the_writer_to_stop_and_the_old_handlers_come_back(sig):
    before = signal.getsignal(sig)
    writer = Writer()
    previous = install_stop_handlers(writer)
    try:
        os.kill(os.getpid(), sig)
        assert writer.stop_requested
        os.kill(os.getpid(), sig)  # a second signal asks again, nothing more
    finally:
        restore_handlers(previous)
    assert signal.getsignal(sig) is before


def test_a_second_ctrl_c_interrupts_where_asked_to():
    writer = Writer()
    previous = install_stop_handlers(writer, interrupt_twice=True)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        assert writer.stop_requested
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        restore_handlers(previous)


def test_outside_the_main_thread_nothing_is_installed():
    result = {}
    thread = threading.Thread(target=lambda: result.setdefault("previous", install_stop_handlers(Writer())))
    thread.start()
    thread.join()
    assert result["previous"] == {}
