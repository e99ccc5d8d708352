"""`flumen run`: a command's output passed through unchanged and sent, line by line, to an
aggregator (a flumen with a file output) with the deployment's fields; its exit status;
signals forwarded once; lifecycle events; buffering while the aggregator is away and delivery
by the next run, once."""

from __future__ import annotations

import os
import pty
import select
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

from conftest import FLUMEN_BIN, file_output, forward_source, free_port, route
from helpers import read_events, wait_for, wait_for_events

AGGREGATOR = forward_source() + file_output("all") + route(["**"], ["all"])

RUN_TIMEOUT = 60


def _env() -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("FLUMEN_LOG", "FLUMEN_LOG_FORMAT", "FLUMEN_RUN_TO", "FLUMEN_RUN_BUFFER_DIR")}
    env["RUST_BACKTRACE"] = "1"
    return env


def _run_args(to_port: int, buffer_dir: Path, *args: str) -> list[str]:
    return [str(FLUMEN_BIN), "run", "--to", f"127.0.0.1:{to_port}", "--buffer-dir", str(buffer_dir), *args]


def flumen_run(to_port: int, buffer_dir: Path, *args: str, input: bytes | None = None,
               timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    """Runs `flumen run` to completion (not on a terminal), capturing stdout and stderr apart."""
    return subprocess.run(_run_args(to_port, buffer_dir, *args), input=input, capture_output=True,
                          timeout=timeout, env=_env(), start_new_session=True,
                          stdin=None if input is not None else subprocess.DEVNULL)


def _records(root: Path, **where) -> list[dict]:
    return [e for e in read_events(root) if all(e["record"].get(k) == v for k, v in where.items())]


def test_output_passes_through_and_every_line_arrives(flumen_factory, tmp_path):
    agg = flumen_factory(AGGREGATOR, name="aggregator")
    script = (
        'echo "starting deploy"; echo "warning: disk 80%" >&2; '
        'printf "step 1\\r\\nstep 2\\n"; echo "ünïcødé ✓" >&2; '
        'echo; printf "last line without newline"; exit 3'
    )
    p = flumen_run(agg.ports["fwd"], tmp_path / "buf",
                   "--deployment", "d-42", "--service", "api", "--env", "staging",
                   "--version", "1.4.2", "--field", "team=payments", "--field", "region=eu-1",
                   "--", "sh", "-c", script)
    assert p.returncode == 3, p.stderr
    assert p.stdout == b"starting deploy\nstep 1\r\nstep 2\n\nlast line without newline"
    # Nothing of flumen's own on stderr when all goes well: it is the command's.
    assert p.stderr == "warning: disk 80%\nünïcødé ✓\n".encode()

    events = wait_for_events(agg.dir("out"), 9)
    assert len(events) == 9, events
    assert {e["tag"] for e in events} == {"deploy.api.staging"}
    lines = [e["record"] for e in events if "event" not in e["record"]]
    by_source = {
        "stdout": [r["message"] for r in lines if r["source"] == "stdout"],
        "stderr": [r["message"] for r in lines if r["source"] == "stderr"],
    }
    assert by_source["stdout"] == ["starting deploy", "step 1", "step 2", "", "last line without newline"]
    assert by_source["stderr"] == ["warning: disk 80%", "ünïcødé ✓"]
    pids = {r["pid"] for r in lines}
    assert len(pids) == 1 and isinstance(pids.pop(), int)
    run_ids = {r["run_id"] for r in lines}
    assert len(run_ids) == 1
    for r in lines:
        assert r["deployment_id"] == "d-42"
        assert r["service"] == "api"
        assert r["environment"] == "staging"
        assert r["version"] == "1.4.2"
        assert r["team"] == "payments" and r["region"] == "eu-1"
        assert r["host"] == socket.gethostname()
        assert r["command"].startswith("sh -c '")
        assert "partial" not in r

    started = [e for e in events if e["record"].get("event") == "command_started"]
    finished = [e for e in events if e["record"].get("event") == "command_finished"]
    assert len(started) == 1 and len(finished) == 1
    s, f = started[0]["record"], finished[0]["record"]
    assert s["args"] == ["sh", "-c", script]
    assert s["deployment_id"] == "d-42" and s["service"] == "api" and s["environment"] == "staging"
    assert s["pid"] == lines[0]["pid"] and s["run_id"] == lines[0]["run_id"]
    assert s["cwd"]
    assert f["exit_code"] == 3
    assert "signal" not in f
    assert f["lines"] == 7 and f["dropped_lines"] == 0
    assert isinstance(f["duration_ms"], int) and f["duration_ms"] >= 0
    assert f["deployment_id"] == "d-42" and f["run_id"] == s["run_id"]
    # Started before every line, finished after.
    times = sorted(e["time"] for e in events)
    assert started[0]["time"] == times[0] and finished[0]["time"] == times[-1]


def test_a_command_killed_by_a_signal_exits_128_plus_n(flumen_factory, tmp_path):
    agg = flumen_factory(AGGREGATOR, name="aggregator")
    p = flumen_run(agg.ports["fwd"], tmp_path / "buf", "--service", "api",
                   "--", "sh", "-c", "echo before; kill -KILL $$")
    assert p.returncode == 128 + signal.SIGKILL, p.stderr
    assert p.stdout == b"before\n"
    events = wait_for_events(agg.dir("out"), 3)
    finished = [e["record"] for e in events if e["record"].get("event") == "command_finished"]
    assert len(finished) == 1
    assert finished[0]["exit_code"] == 137
    assert finished[0]["signal"] == "SIGKILL"
    assert [e["record"]["message"] for e in events if "source" in e["record"]] == ["before"]
    assert {e["tag"] for e in events} == {"deploy.api"}


def test_a_command_that_cannot_start_exits_127_and_is_reported(flumen_factory, tmp_path):
    agg = flumen_factory(AGGREGATOR, name="aggregator")
    p = flumen_run(agg.ports["fwd"], tmp_path / "buf", "--deployment", "d-1", "--",
                   str(tmp_path / "no-such-script.sh"), "arg")
    assert p.returncode == 127
    assert p.stdout == b""
    assert b"no-such-script.sh" in p.stderr
    events = wait_for_events(agg.dir("out"), 2)
    kinds = sorted(e["record"]["event"] for e in events)
    assert kinds == ["command_finished", "command_started"]
    finished = [e["record"] for e in events if e["record"]["event"] == "command_finished"][0]
    assert finished["exit_code"] == 127 and finished["error"]
    assert finished["deployment_id"] == "d-1"


SIGNAL_SCRIPT = """
trap 'echo "got {sig}"' {sig}
echo ready
i=0
while [ $i -lt 15 ]; do sleep 0.1; i=$((i+1)); done
echo done
exit 7
"""


class _Output:
    """What a process wrote to `fd` so far, read on demand."""

    def __init__(self, fd: int):
        self.fd, self.buf, self.pos = fd, b"", 0

    def until(self, needle: bytes, timeout: float = 20.0) -> None:
        """Reads until `needle` appears after the previous one found."""
        deadline = time.monotonic() + timeout
        while (at := self.buf.find(needle, self.pos)) < 0:
            left = deadline - time.monotonic()
            assert left > 0, f"no {needle!r} within {timeout}s; got {self.buf!r}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # a pty's master reads EIO once the other side is closed
                    chunk = b""
                assert chunk, f"end of output before {needle!r}; got {self.buf!r}"
                self.buf += chunk
        self.pos = at + len(needle)


def test_a_signal_sent_to_flumen_run_reaches_the_command_once(flumen_factory, tmp_path):
    agg = flumen_factory(AGGREGATOR, name="aggregator")
    proc = subprocess.Popen(
        _run_args(agg.ports["fwd"], tmp_path / "buf", "--", "sh", "-c", SIGNAL_SCRIPT.format(sig="TERM")),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env=_env(), start_new_session=True)
    output = _Output(proc.stdout.fileno())
    try:
        output.until(b"ready\n")
        # As a CI runner would: to flumen run's process group (flumen run alone: the command
        # has a group of its own, so it gets the signal once, from flumen run).
        os.killpg(proc.pid, signal.SIGTERM)
        output.until(b"got TERM\n")
        rest, err = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = output.buf + rest
    assert proc.returncode == 7, err
    assert out.count(b"got TERM") == 1, out
    assert out.endswith(b"done\n"), out
    events = wait_for_events(agg.dir("out"), 5)
    # (The group's `sleep` dies of the signal too: sh may say so on stderr.)
    messages = [e["record"]["message"] for e in events if e["record"].get("source") == "stdout"]
    assert messages == ["ready", "got TERM", "done"]
    finished = [e["record"] for e in events if e["record"].get("event") == "command_finished"]
    assert finished[0]["exit_code"] == 7


def _spawn_on_terminal(args: list[str]) -> tuple[subprocess.Popen, int]:
    """Starts `args` as the foreground process group of a new pseudo-terminal; returns the
    process and the terminal's master side."""
    master, slave = pty.openpty()

    def controlling_terminal():
        import fcntl
        import termios
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(args, stdin=slave, stdout=slave, stderr=slave, env=_env(),
                            start_new_session=True, preexec_fn=controlling_terminal)
    os.close(slave)
    return proc, master


def test_on_a_terminal_ctrl_c_reaches_the_command_once(flumen_factory, tmp_path):
    agg = flumen_factory(AGGREGATOR, name="aggregator")
    # The command stays in the terminal's foreground: it can read the terminal (from the
    # background it would be stopped by SIGTTIN).
    script = 'read answer; echo "you said $answer"; ' + SIGNAL_SCRIPT.format(sig="INT")
    proc, master = _spawn_on_terminal(
        _run_args(agg.ports["fwd"], tmp_path / "buf", "--", "sh", "-c", script))
    output = _Output(master)
    try:
        os.write(master, b"hello\n")
        output.until(b"you said hello")
        output.until(b"ready")
        os.write(master, b"\x03")  # Ctrl-C: the terminal signals its foreground process group
        output.until(b"done")
        proc.wait(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert proc.returncode == 7, output.buf
    assert output.buf.count(b"got INT") == 1, output.buf
    # kill(1) to flumen run on a terminal is forwarded too.
    proc, master = _spawn_on_terminal(
        _run_args(agg.ports["fwd"], tmp_path / "buf", "--", "sh", "-c", SIGNAL_SCRIPT.format(sig="USR1")))
    output = _Output(master)
    try:
        output.until(b"ready")
        os.kill(proc.pid, signal.SIGUSR1)
        output.until(b"done")
        proc.wait(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    assert proc.returncode == 7, output.buf
    assert output.buf.count(b"got USR1") == 1, output.buf


def test_when_the_output_goes_away_the_command_learns_it(flumen_factory, tmp_path):
    agg = flumen_factory(AGGREGATOR, name="aggregator")
    # As in `flumen run -- seq ... | head -1`: the command gets SIGPIPE, as it would without
    # flumen run, and flumen run exits as a shell reports that.
    proc = subprocess.Popen(_run_args(agg.ports["fwd"], tmp_path / "buf", "--", "seq", "1", "100000000"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=_env(), start_new_session=True)
    try:
        assert proc.stdout.readline() == b"1\n"
        proc.stdout.close()
        err = proc.stderr.read()
        proc.wait(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGPIPE, err
    finished = wait_for(lambda: _records(agg.dir("out"), event="command_finished"), 20, "the finished event")
    assert finished[0]["record"]["signal"] == "SIGPIPE"


def test_stdin_is_the_commands(flumen_factory, tmp_path):
    agg = flumen_factory(AGGREGATOR, name="aggregator")
    p = flumen_run(agg.ports["fwd"], tmp_path / "buf", "--",
                   "sh", "-c", 'read answer; echo "you said $answer"', input=b"yes\n")
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"you said yes\n"
    events = wait_for_events(agg.dir("out"), 3)
    assert [e["record"]["message"] for e in events if "source" in e["record"]] == ["you said yes"]


def test_long_lines_are_cut_and_bytes_that_are_not_utf8_replaced(flumen_factory, tmp_path):
    agg = flumen_factory(AGGREGATOR, name="aggregator")
    script = ("head -c 100000 /dev/zero | tr '\\0' 'a'; echo; "
              "printf 'bad \\377 byte\\n'")
    p = flumen_run(agg.ports["fwd"], tmp_path / "buf", "--", "sh", "-c", script)
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"a" * 100000 + b"\nbad \xff byte\n"
    events = wait_for_events(agg.dir("out"), 5)
    lines = [e["record"] for e in events if "source" in e["record"]]
    assert [len(r["message"]) for r in lines] == [65536, 100000 - 65536, len("bad \ufffd byte")]
    assert [r.get("partial", False) for r in lines] == [True, False, False]
    assert lines[2]["message"] == "bad \ufffd byte"


def test_without_an_aggregator_lines_wait_and_the_next_run_delivers_them_once(flumen_factory, tmp_path):
    port = free_port()  # nothing listens here yet
    buf = tmp_path / "buf"
    p = flumen_run(port, buf, "--deployment", "d-7", "--service", "web", "--",
                   "sh", "-c", "for i in 1 2 3 4 5; do echo first-$i; done; exit 2")
    assert p.returncode == 2
    assert p.stdout == b"".join(b"first-%d\n" % i for i in range(1, 6))
    # One warning on stderr saying where the events wait.
    assert b"not delivered" in p.stderr and str(buf).encode() in p.stderr, p.stderr

    agg = flumen_factory(forward_source().replace("@port:fwd@", str(port)) + file_output("all")
                         + route(["**"], ["all"]), name="aggregator")
    q = flumen_run(port, buf, "--deployment", "d-8", "--service", "web", "--", "echo", "second")
    assert q.returncode == 0, q.stderr
    assert q.stderr == b""
    events = wait_for_events(agg.dir("out"), 5 + 2 + 1 + 2, settle=1.0)
    messages = Counter(e["record"].get("message") for e in events if "source" in e["record"])
    assert messages == Counter([f"first-{i}" for i in range(1, 6)] + ["second"]), messages
    assert len(events) == 10
    lifecycle = Counter((e["record"]["deployment_id"], e["record"]["event"])
                        for e in events if "event" in e["record"])
    assert lifecycle == Counter({("d-7", "command_started"): 1, ("d-7", "command_finished"): 1,
                                 ("d-8", "command_started"): 1, ("d-8", "command_finished"): 1})
    # Nothing is left to flush.
    r = subprocess.run(_run_args(port, buf, "--flush", "--flush-timeout", "10s"),
                       capture_output=True, timeout=RUN_TIMEOUT, env=_env())
    assert r.returncode == 0, r.stderr


def test_a_black_hole_aggregator_does_not_hold_up_the_command(flumen_factory, tmp_path):
    # Accepts connections (into its backlog) and never answers: every delivery hangs.
    hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)
    port = hole.getsockname()[1]
    buf = tmp_path / "buf"
    n = 100_000
    try:
        p = flumen_run(port, buf, "--flush-timeout", "1s", "--service", "batch",
                       "--", "sh", "-c", f"seq 1 {n}; exit 4", timeout=120)
    finally:
        hole.close()
    # The command ran to its end, with all its output, before any aggregator existed.
    assert p.returncode == 4, p.stderr
    assert p.stdout == "".join(f"{i}\n" for i in range(1, n + 1)).encode()
    assert b"not delivered" in p.stderr, p.stderr
    assert b"were not sent" not in p.stderr, p.stderr

    agg = flumen_factory(forward_source().replace("@port:fwd@", str(port)) + file_output("all")
                         + route(["**"], ["all"]), name="aggregator")
    r = subprocess.run(_run_args(port, buf, "--flush", "--flush-timeout", "60s"),
                       capture_output=True, timeout=120, env=_env())
    assert r.returncode == 0, r.stderr
    events = wait_for_events(agg.dir("out"), n + 2, timeout=60, settle=1.0)
    assert len(events) == n + 2
    seen = Counter(e["record"]["message"] for e in events if "source" in e["record"])
    assert len(seen) == n and set(seen.values()) == {1}
    assert seen.keys() == {str(i) for i in range(1, n + 1)}
    finished = [e["record"] for e in events if e["record"].get("event") == "command_finished"]
    assert finished[0]["exit_code"] == 4 and finished[0]["lines"] == n
    assert finished[0]["dropped_lines"] == 0


def test_two_runs_at_once_share_a_buffer_directory(flumen_factory, tmp_path):
    agg = flumen_factory(AGGREGATOR, name="aggregator")
    buf = tmp_path / "buf"
    procs = [subprocess.Popen(_run_args(agg.ports["fwd"], buf, "--deployment", f"d-{i}", "--",
                                        "sh", "-c", f"echo run-{i}; sleep 1; echo run-{i}-end"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              stdin=subprocess.DEVNULL, env=_env(), start_new_session=True)
             for i in range(2)]
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=RUN_TIMEOUT)
        assert proc.returncode == 0, err
        assert out == f"run-{i}\nrun-{i}-end\n".encode()
        assert err == b""
    events = wait_for_events(agg.dir("out"), 8, settle=0.5)
    messages = sorted(e["record"]["message"] for e in events if "source" in e["record"])
    assert messages == ["run-0", "run-0-end", "run-1", "run-1-end"]
    assert len(events) == 8
    # Each had a slot (a log) of its own.
    slots = sorted(p.name for p in (buf / f"127.0.0.1_{agg.ports['fwd']}").iterdir())
    assert slots == ["0", "1"]
