"""The tail source with the real binary: every line written to a file arrives exactly once while
the files rotate (rename-and-create and copytruncate) and flumen is killed with kill -9 and
started again several times.

Topology: writer threads append numbered lines to files in `logs/` -> flumen A (tail source ->
forward output with require_ack; the one killed) -> flumen B (forward source -> file output;
never killed). B recognises the chunks A resends after a restart, so B's file output shows what
A stored: each line must be there once.
"""

from __future__ import annotations

import os
import random
import shutil
import threading
import time
from pathlib import Path

import pytest

from conftest import file_output, forward_source, relay_output, route
from helpers import read_events, wait_for

AGGREGATOR = forward_source() + file_output("all") + route(["**"], ["all"])


def tail_agent(logs: Path, dest_port: int, extra: str = "") -> str:
    return f"""
[sources.files]
type = "tail"
paths = ["{logs}/*.log"]
tag = "app"
poll_interval = "200ms"
position_interval = "200ms"
rotate_wait = "1s"
{extra}
""" + relay_output(str(dest_port)) + route(["**"], ["relay"])


class Outages:
    """When the tailing flumen is down: from `MARGIN` s before it is killed until `MARGIN` s
    after it is ready again (time enough to see and store the file it follows).

    A file rotated twice in that time is out of any tailer's reach: the content between the two
    rotations was never seen, and no matched path leads to its copy (a limit the tail source's
    documentation states). Writers therefore rotate at most once per outage, so that a missing
    line always means a broken promise, never that limit."""

    MARGIN = 0.5

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.start = float("inf")
        self.end = float("inf")

    def begin(self) -> None:
        with self.lock:
            self.start = time.monotonic() - self.MARGIN
            self.end = float("inf")

    def over(self) -> None:
        with self.lock:
            self.end = time.monotonic() + self.MARGIN

    def may_rotate(self, last_rotation: float) -> bool:
        """True unless now is in an outage during which the file was rotated already."""
        with self.lock:
            return not self.start <= time.monotonic() <= self.end or last_rotation < self.start


class Writer(threading.Thread):
    """Appends numbered lines to `logs/<name>.log` at about `rate` lines/s and rotates the file
    every `every` seconds (with jitter, at most once per outage): `rename` moves it to
    `<name>.log.<k>` and starts a new file; `copytruncate` copies it to `<name>.log.<k>` and
    truncates it, as logrotate does."""

    def __init__(self, logs: Path, name: str, how: str, rate: float, every: float, seed: int,
                 outages: Outages):
        super().__init__(daemon=True)
        self.path = logs / f"{name}.log"
        self.name_ = name
        self.how = how
        self.rate = rate
        self.every = every
        self.random = random.Random(seed)
        self.outages = outages
        self.written = 0
        self.rotations = 0
        self.last_rotation = float("-inf")
        self.stopping = threading.Event()
        self.error: BaseException | None = None

    def line(self, seq: int) -> bytes:
        pad = "x" * self.random.randint(40, 160)
        return f"{self.name_} {seq:07d} {pad}\n".encode()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as e:  # reported by the test
            self.error = e

    def _run(self) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        next_rotation = time.monotonic() + self.every * self.random.uniform(0.5, 1.5)
        start = time.monotonic()
        while not self.stopping.is_set():
            # A few lines per write, as buffered loggers do.
            batch = b"".join(self.line(self.written + i) for i in range(self.random.randint(1, 8)))
            os.write(fd, batch)
            self.written += batch.count(b"\n")
            if time.monotonic() >= next_rotation and self.outages.may_rotate(self.last_rotation):
                self.last_rotation = time.monotonic()
                self.rotations += 1
                rotated = self.path.with_name(f"{self.path.name}.{self.rotations}")
                if self.how == "rename":
                    os.rename(self.path, rotated)
                    # The application writes a few more lines to the old file before it reopens.
                    tail = b"".join(self.line(self.written + i) for i in range(3))
                    os.write(fd, tail)
                    self.written += 3
                    os.close(fd)
                    fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                else:
                    shutil.copyfile(self.path, rotated)
                    os.truncate(self.path, 0)
                next_rotation = time.monotonic() + self.every * self.random.uniform(0.7, 1.3)
            # Paced to the rate over the whole run.
            ahead = self.written / self.rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
        os.close(fd)


def lines_by_writer(out: Path) -> dict[str, list[int]]:
    seen: dict[str, list[int]] = {}
    for event in read_events(out):
        text = event["record"]["log"]
        name, seq, _ = text.split(" ", 2)
        seen.setdefault(name, []).append(int(seq))
    return seen


def check_exactly_once(writers: list[Writer], out: Path) -> None:
    seen = lines_by_writer(out)
    problems = []
    for w in writers:
        got = seen.get(w.name_, [])
        counts: dict[int, int] = {}
        for s in got:
            counts[s] = counts.get(s, 0) + 1
        missing = [s for s in range(w.written) if s not in counts]
        dups = [s for s, c in counts.items() if c > 1]
        extra = [s for s in counts if s >= w.written]
        if missing or dups or extra:
            problems.append(
                f"{w.name_} ({w.how}, {w.written} lines, {w.rotations} rotations): "
                f"{len(missing)} missing e.g. {missing[:8]}, {len(dups)} duplicated e.g. {dups[:8]}, "
                f"{len(extra)} never written")
    assert not problems, "; ".join(problems)


# A seed with which a CI run once lost lines of a short file rotated by copytruncate (its
# copy went unrecognised); it runs every time, beside a new random one (or TAIL_TEST_SEED).
SEEDS = {"lost_copytruncate_lines_once": 234174722, "random": None}


@pytest.mark.parametrize("seed_name", SEEDS)
def test_every_line_arrives_exactly_once_through_rotations_and_kill_9(flumen_factory, tmp_path,
                                                                      seed_name):
    seed = SEEDS[seed_name]
    if seed is None:
        seed = int(os.environ.get("TAIL_TEST_SEED", random.randrange(1 << 30)))
    print(f"TAIL_TEST_SEED={seed}")
    rng = random.Random(seed)
    logs = tmp_path / "logs"
    logs.mkdir()
    b = flumen_factory(AGGREGATOR, name="b")
    a = flumen_factory(tail_agent(logs, b.ports["fwd"]), name="a")
    outages = Outages()
    writers = [
        Writer(logs, "renamed0", "rename", 900, 2.5, seed + 1, outages),
        Writer(logs, "renamed1", "rename", 600, 3.5, seed + 2, outages),
        Writer(logs, "copied0", "copytruncate", 900, 2.5, seed + 3, outages),
        Writer(logs, "copied1", "copytruncate", 600, 3.5, seed + 4, outages),
    ]
    for w in writers:
        w.start()
    # Crashes at random moments, each followed at once by a restart.
    kills = 0
    deadline = time.monotonic() + 18
    while time.monotonic() < deadline:
        time.sleep(rng.uniform(1.0, 3.5))
        outages.begin()
        a.kill()
        kills += 1
        a.start()
        outages.over()
    time.sleep(1.0)
    for w in writers:
        w.stopping.set()
    for w in writers:
        w.join(timeout=10)
        assert w.error is None, f"writer {w.name_} failed: {w.error!r}"
    total = sum(w.written for w in writers)
    assert kills >= 4
    assert all(w.rotations >= 3 for w in writers), [(w.name_, w.rotations) for w in writers]
    out = b.dir("out")
    try:
        wait_for(lambda: len(read_events(out)) >= total, 40, f"{total} lines at the aggregator")
    except AssertionError:
        check_exactly_once(writers, out)
        raise
    time.sleep(1.5)  # late duplicates would show now
    check_exactly_once(writers, out)
    print(f"{total} lines, {kills} kills, rotations {[w.rotations for w in writers]}: each once")


def test_bad_inputs_are_reported_and_the_rest_keeps_working(flumen_factory, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "dir.log").mkdir()
    (logs / "binary.log").write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff\x00\xfe\x81\n")
    (logs / "good.log").write_text("".join(f"good {i}\n" for i in range(100)))
    b = flumen_factory(AGGREGATOR, name="b")
    a = flumen_factory(tail_agent(logs, b.ports["fwd"]), name="a")
    out = b.dir("out")
    wait_for(lambda: len(read_events(out)) >= 100, 20, "100 lines")
    # The position file deleted while running: written again, nothing repeated.
    pos = a.data_dir / "tail" / "files.pos"
    wait_for(pos.exists, 10, "the position file")
    pos.unlink()
    with open(logs / "good.log", "a") as f:
        f.write("".join(f"good {i}\n" for i in range(100, 150)))
    wait_for(lambda: len(read_events(out)) >= 150, 20, "150 lines")
    wait_for(pos.exists, 10, "the position file written again")
    a.stop()
    pos.unlink()
    a.start()
    with open(logs / "good.log", "a") as f:
        f.write("".join(f"good {i}\n" for i in range(150, 160)))
    wait_for(lambda: len(read_events(out)) >= 160, 20, "160 lines")
    time.sleep(1.0)
    logged = sorted(int(e["record"]["log"].split()[1]) for e in read_events(out))
    assert logged == list(range(160))
    err = a.stderr_text()
    assert "binary.log" in err and "binary file" in err, err[-3000:]
    assert "dir.log" in err and "directory" in err, err[-3000:]
    assert "No position file" in err, err[-3000:]
    assert a.get("/healthz").status_code == 200
    metrics = a.metrics_text()
    assert 'flumen_tail_errors_total{source="files",kind="binary"} 1' in metrics, metrics
    assert 'flumen_tail_errors_total{source="files",kind="not_a_file"} 1' in metrics, metrics
