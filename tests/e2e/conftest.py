"""Fixtures that run the real `flumen` binary.

`flumen_factory(config)` writes a TOML config into a temporary directory, starts
`flumen serve --config <file>` and waits (bounded) until `GET /readyz` answers 200. Config
text may contain placeholders, filled in before the file is written:

    @data@         the instance's data directory (also `data_dir`, added when missing)
    @port:NAME@    a free 127.0.0.1 port (TCP and UDP), the same number for the same NAME
    @dir:NAME@     a directory under the instance's temporary directory

The `[api]` section and `data_dir` are prepended when the config has none, so tests only
write the parts they are about. On teardown every instance gets SIGTERM and must exit within
a bounded time. When a test fails, each instance's stderr is attached to the report.

`postgres` is a PostgreSQL cluster of the test's own (pg.py, scripts/postgres.sh), started;
`postgres.url` names its database `flumen`. When a test fails, its server log is attached too.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
FLUMEN_BIN = Path(os.environ.get("FLUMEN_BIN") or REPO_ROOT / "target" / "debug" / "flumen").resolve()
GO_CLIENT = REPO_ROOT / "target" / "e2e" / "fluent-go-client"
from helpers import NODE_DIR  # noqa: E402,F401  (tests import it from here too)

READY_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0

DEFAULT_HEADER = """\
data_dir = "@data@"

[log]
persistence = "interval"
fsync_interval = "10ms"
"""

DEFAULT_API = """
[api]
address = "127.0.0.1:@port:api@"
"""


# Ports handed out in this test session: the kernel may offer a just-closed port again, and
# two listeners of one config on the same port fail to start.
_handed_out: set[int] = set()


def free_port() -> int:
    """A port that is free on 127.0.0.1 for both TCP and UDP right now (forward sources
    listen on both), and not handed out before in this session."""
    for _ in range(200):
        tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        tcp.bind(("127.0.0.1", 0))
        port = tcp.getsockname()[1]
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            if port in _handed_out:
                continue
            udp.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            udp.close()
            tcp.close()
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port found")


class Flumen:
    """One `flumen serve` process and the files around it."""

    def __init__(self, name: str, workdir: Path, config_template: str):
        self.name = name
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.data_dir = workdir / "data"
        self.ports: dict[str, int] = {}
        self.dirs: dict[str, Path] = {}
        text = config_template
        if not re.search(r"^\s*data_dir\s*=", text, re.M):
            if re.search(r"^\s*\[log\]", text, re.M):
                text = 'data_dir = "@data@"\n' + text
            else:
                text = DEFAULT_HEADER + text
        if not re.search(r"^\s*\[api\]", text, re.M):
            text = text + DEFAULT_API
        text = text.replace("@data@", str(self.data_dir))
        text = re.sub(r"@port:([a-zA-Z0-9_]+)@", lambda m: str(self.port(m.group(1))), text)
        text = re.sub(r"@dir:([a-zA-Z0-9_]+)@", lambda m: str(self.dir(m.group(1))), text)
        self.config_text = text
        self.config_path = workdir / "flumen.toml"
        self.config_path.write_text(text)
        self.stderr_path = workdir / "stderr.log"
        self.stdout_path = workdir / "stdout.log"
        self.proc: subprocess.Popen | None = None
        self.exit_codes: list[int] = []

    # -- placeholders ------------------------------------------------------------------
    def port(self, name: str) -> int:
        if name not in self.ports:
            self.ports[name] = free_port()
        return self.ports[name]

    def dir(self, name: str) -> Path:
        if name not in self.dirs:
            d = self.workdir / name
            d.mkdir(parents=True, exist_ok=True)
            self.dirs[name] = d
        return self.dirs[name]

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    # -- lifecycle ---------------------------------------------------------------------
    def start(self, timeout: float = READY_TIMEOUT) -> "Flumen":
        assert FLUMEN_BIN.exists(), f"flumen binary not found at {FLUMEN_BIN} (set FLUMEN_BIN)"
        assert self.proc is None or self.proc.poll() is not None, "already running"
        with open(self.stderr_path, "ab") as err, open(self.stdout_path, "ab") as out:
            self.proc = subprocess.Popen(
                [str(FLUMEN_BIN), "serve", "--config", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=self.workdir,
                env={**os.environ, "RUST_BACKTRACE": "1"},
            )
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                raise AssertionError(f"flumen {self.name} exited with {code} before becoming ready")
            try:
                r = requests.get(self.api + "/readyz", timeout=1)
                if r.status_code == 200:
                    return self
                last = f"HTTP {r.status_code}: {r.text[:200]}"
            except requests.RequestException as e:
                last = repr(e)
            time.sleep(0.05)
        raise AssertionError(f"flumen {self.name}: /readyz not 200 within {timeout}s (last: {last})")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then wait up to `timeout` s. Returns the exit code; kills the process and
        raises AssertionError when it does not exit in time."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                raise AssertionError(f"flumen {self.name} did not exit within {timeout}s of SIGTERM")
        code = self.proc.returncode
        self.exit_codes.append(code)
        self.proc = None
        return code

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    # -- observation -------------------------------------------------------------------
    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stdout_text(self) -> str:
        try:
            return self.stdout_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.api + path, timeout=kw.pop("timeout", 10), **kw)

    def metrics_text(self) -> str:
        r = self.get("/metrics")
        assert r.status_code == 200, f"/metrics answered {r.status_code}: {r.text[:300]}"
        return r.text


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for inst in getattr(item, "_flumen_instances", []):
            text = inst.stderr_text()
            if len(text) > 20000:
                text = "...(truncated)...\n" + text[-20000:]
            rep.sections.append((f"flumen {inst.name} stderr ({inst.stderr_path})", text or "(empty)"))
            rep.sections.append((f"flumen {inst.name} config", inst.config_text))
        for pg in getattr(item, "_postgres_instances", []):
            text = pg.log()
            if len(text) > 20000:
                text = "...(truncated)...\n" + text[-20000:]
            rep.sections.append((f"postgres {pg.url} log", text or "(empty)"))


@pytest.fixture
def flumen_factory(request, tmp_path):
    instances: list[Flumen] = []
    request.node._flumen_instances = instances

    def make(config: str, name: str = "flumen", start: bool = True) -> Flumen:
        inst = Flumen(name, tmp_path / name, config)
        instances.append(inst)
        if start:
            inst.start()
        return inst

    yield make

    problems = []
    for inst in instances:
        try:
            inst.stop()
        except AssertionError as e:
            problems.append(str(e))
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture
def postgres(request):
    """A PostgreSQL cluster of its own (pg.py), started: `postgres.url` is the URL of its
    database `flumen`; `postgres.stop()` and `postgres.start()` take it away and bring it back
    with its data. Stopped and deleted after the test."""
    from pg import Postgres  # here: pg.py imports this module

    pg = Postgres()
    request.node._postgres_instances = [pg]
    try:
        pg.start()
        yield pg
    finally:
        pg.remove()


# A file output that writes every event to <dir>/<tag>.log, flushing quickly.
def file_output(name: str, dirname: str = "out", extra: str = "") -> str:
    return f"""
[outputs.{name}]
type = "file"
path = "@dir:{dirname}@/{{{{tag}}}}.log"
batch = {{ max_events = 1000, max_bytes = "1MiB", timeout = "50ms" }}
{extra}
"""


def forward_source(name: str = "fwd", extra: str = "") -> str:
    return f"""
[sources.{name}]
type = "forward"
address = "127.0.0.1:@port:{name}@"
{extra}
"""


def relay_output(port_ref: str, extra: str = "") -> str:
    """A forward output with acks to 127.0.0.1:<port_ref>, quick to notice and retry
    failures. `port_ref` is a placeholder (`@port:r@`) or a number."""
    return f"""
[outputs.relay]
type = "forward"
servers = [{{ address = "127.0.0.1:{port_ref}" }}]
require_ack = true
ack_timeout = "2s"
connect_timeout = "1s"
recover_wait = "200ms"
batch = {{ max_events = 5000, max_bytes = "2MiB", timeout = "20ms" }}
retry = {{ initial_backoff = "50ms", max_backoff = "500ms", max_duration = "1h" }}
{extra}
"""


def http_source(name: str = "web", extra: str = "") -> str:
    return f"""
[sources.{name}]
type = "http"
address = "127.0.0.1:@port:{name}@"
{extra}
"""


def route(match: list[str], outputs: list[str], label: str | None = None,
          select: str | None = None) -> str:
    m = ", ".join(f'"{p}"' for p in match)
    o = ", ".join(f'"{p}"' for p in outputs)
    lab = f'label = "{label}"\n' if label else ""
    sel = f"select = '{select}'\n" if select else ""
    return f"\n[[routes]]\n{lab}{sel}match = [{m}]\noutputs = [{o}]\n"


@pytest.fixture
def catch_all(flumen_factory):
    """flumen with a forward source, an HTTP source and every event to a file output."""
    return flumen_factory(forward_source() + http_source() + file_output("all") + route(["**"], ["all"]))
