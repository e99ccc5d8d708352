"""The syslog source with the senders users run: util-linux `logger` (RFC 5424 and RFC 3164,
UDP and TCP, octet-counted and newline-framed), rsyslog forwarding to flumen with `omfwd`, and
`openssl s_client` over TLS; plus bad frames on raw sockets, which must close only their own
connection."""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import file_output, free_port, route
from helpers import metric_sum, parse_metrics, wait_closed, wait_for, wait_for_events

LOGGER = shutil.which("logger")
RSYSLOGD = shutil.which("rsyslogd") or next(
    (p for p in ("/usr/sbin/rsyslogd", "/sbin/rsyslogd") if os.path.exists(p)), None)
OPENSSL = shutil.which("openssl")
HOSTNAME = socket.gethostname()

needs_logger = pytest.mark.skipif(LOGGER is None, reason="logger (bsdutils) is not installed")
needs_rsyslog = pytest.mark.skipif(RSYSLOGD is None, reason="rsyslogd is not installed")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="openssl is not installed")


def syslog_source(mode: str, extra: str = "", name: str = "sys") -> str:
    return f"""
[sources.{name}]
type = "syslog"
mode = "{mode}"
address = "127.0.0.1:@port:{name}@"
{extra}
"""


def syslog_flumen(flumen_factory, mode: str, extra: str = ""):
    """flumen with one syslog source `sys` and every event in dir("out")/<tag>.log."""
    return flumen_factory(syslog_source(mode, extra) + file_output("all") + route(["**"], ["all"]))


def out_dir(f) -> Path:
    return f.dir("out")


def logger(port: int, *args: str, stdin: str | None = None) -> None:
    subprocess.run([LOGGER, "--server", "127.0.0.1", "--port", str(port), *args],
                   input=stdin, text=True, check=True, timeout=30, capture_output=True)


def assert_recent(event: dict, within: float = 300.0) -> None:
    t = _dt.datetime.strptime(event["time"][:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=_dt.timezone.utc)
    age = abs(time.time() - t.timestamp())
    assert age < within, f"event time {event['time']} is {age:.0f}s away from now"


def assert_hostname(record: dict) -> None:
    assert record["hostname"] in (HOSTNAME, HOSTNAME.split(".")[0]), record
    assert record["host"] == record["hostname"], record


def counter(f, name: str, **labels) -> float:
    return metric_sum(parse_metrics(f.metrics_text()), name, **labels) or 0.0


# ---------------------------------------------------------------------------------------------
# logger (util-linux)


@needs_logger
@pytest.mark.parametrize("mode, args", [
    ("udp", ["--udp", "--rfc5424"]),
    ("udp", ["--udp", "--rfc3164"]),
    ("tcp", ["--tcp", "--rfc5424"]),
    ("tcp", ["--tcp", "--rfc5424", "--octet-count"]),
    ("tcp", ["--tcp", "--rfc3164"]),
    ("tcp", ["--tcp", "--rfc3164", "--octet-count"]),
], ids=["udp-5424", "udp-3164", "tcp-5424-newline", "tcp-5424-octets", "tcp-3164-newline",
        "tcp-3164-octets"])
def test_logger(flumen_factory, mode, args):
    f = syslog_flumen(flumen_factory, mode, 'tag = "syslog.{app_name}"')
    port = f.ports["sys"]
    rfc5424 = "--rfc5424" in args
    common = [*args, "-t", "e2eapp", "-p", "local0.err", "--id=4242"]
    sd = ["--sd-id", "ex@32473", "--sd-param", 'k="v 1"', "--sd-param", 'q="a \\"quoted\\" \\]"',
          "--msgid", "ID7"] if rfc5424 else []
    logger(port, *common, *sd, "hello from logger ✓")
    # Lines on standard input: one message each.
    logger(port, *common, stdin="".join(f"line {i}\n" for i in range(20)))
    # A warning from another program.
    logger(port, *args, "-t", "other", "-p", "daemon.warning", "something odd")

    events = wait_for_events(out_dir(f), 22)
    assert len(events) == 22, events
    hello = next(e for e in events if e["record"]["message"] == "hello from logger ✓")
    assert hello["tag"] == "syslog.e2eapp"
    r = hello["record"]
    assert (r["app_name"], r["proc_id"]) == ("e2eapp", "4242"), r
    assert (r["facility"], r["severity"], r["level"]) == ("local0", "err", "ERROR"), r
    assert_hostname(r)
    assert r["source_address"] == "127.0.0.1"
    assert "parse_error" not in r, r
    assert "timestamp" in r
    assert_recent(hello)
    if rfc5424:
        assert r["msg_id"] == "ID7"
        assert r["structured_data"]["ex@32473"] == {"k": "v 1", "q": 'a "quoted" ]'}, r
        assert "tzKnown" in r["structured_data"]["timeQuality"], r
    else:
        assert "structured_data" not in r and "msg_id" not in r, r
    lines = [e["record"]["message"] for e in events if e["record"]["message"].startswith("line ")]
    assert lines == [f"line {i}" for i in range(20)]
    other = next(e for e in events if e["tag"] == "syslog.other")
    assert (other["record"]["message"], other["record"]["facility"], other["record"]["level"]) == \
        ("something odd", "daemon", "WARN")
    assert counter(f, "flumen_source_malformed_events_total", source="sys") == 0


# ---------------------------------------------------------------------------------------------
# rsyslog


class Rsyslog:
    """One `rsyslogd -n` with its own configuration: a TCP input on `port` and one forwarding
    action to flumen."""

    def __init__(self, workdir: Path, action: str):
        self.workdir = workdir
        (workdir / "work").mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.conf = workdir / "rsyslog.conf"
        self.conf.write_text(f"""
global(workDirectory="{workdir / 'work'}" net.enableDNS="off")
module(load="imtcp")
input(type="imtcp" port="{self.port}" address="127.0.0.1")
{action}
""")
        self.log = workdir / "rsyslogd.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Rsyslog":
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [RSYSLOGD, "-n", "-f", str(self.conf), "-i", str(self.workdir / "rsyslogd.pid")],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=self.workdir)

        def listening():
            assert self.proc.poll() is None, f"rsyslogd exited: {self.log.read_text()}"
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                return False

        wait_for(listening, 20, "rsyslogd to listen")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None


@pytest.fixture
def rsyslog_factory(tmp_path):
    started: list[Rsyslog] = []

    def make(action: str) -> Rsyslog:
        r = Rsyslog(tmp_path / f"rsyslog{len(started)}", action)
        started.append(r)
        return r.start()

    yield make
    for r in started:
        r.stop()


@needs_logger
@needs_rsyslog
@pytest.mark.parametrize("mode, protocol, framing, template", [
    ("tcp", "tcp", "octet-counted", "RSYSLOG_SyslogProtocol23Format"),
    ("tcp", "tcp", "traditional", "RSYSLOG_TraditionalForwardFormat"),
    ("udp", "udp", None, "RSYSLOG_SyslogProtocol23Format"),
], ids=["tcp-octets-5424", "tcp-newline-3164", "udp-5424"])
def test_rsyslog_forwards(flumen_factory, rsyslog_factory, mode, protocol, framing, template):
    f = syslog_flumen(flumen_factory, mode)
    framing_arg = f' TCP_Framing="{framing}"' if framing else ""
    rsyslog = rsyslog_factory(
        f'action(type="omfwd" target="127.0.0.1" port="{f.ports["sys"]}" protocol="{protocol}"'
        f'{framing_arg} template="{template}")')
    # logger → rsyslog (RFC 5424, octet-counted) → flumen, in the format under test.
    common = ["--tcp", "--octet-count", "--rfc5424", "-t", "e2eapp", "-p", "local3.warning",
              "--id=777"]
    logger(rsyslog.port, *common, "--sd-id", "ex@32473", "--sd-param", 'k="v 1"',
           "--msgid", "MID", "through rsyslog")
    logger(rsyslog.port, *common, stdin="".join(f"relayed {i}\n" for i in range(100)))

    events = wait_for_events(out_dir(f), 101,
                             where=lambda e: e["record"].get("app_name") == "e2eapp")
    assert len(events) == 101, events
    first = next(e for e in events if e["record"]["message"] == "through rsyslog")
    r = first["record"]
    assert first["tag"] == "syslog"
    assert (r["facility"], r["severity"], r["level"]) == ("local3", "warning", "WARN"), r
    assert r["proc_id"] == "777", r
    assert_hostname(r)
    assert "parse_error" not in r, r
    assert_recent(first)
    if template == "RSYSLOG_SyslogProtocol23Format":
        assert r["msg_id"] == "MID", r
        assert r["structured_data"]["ex@32473"] == {"k": "v 1"}, r
    else:
        # The traditional format carries neither MSGID nor structured data.
        assert "structured_data" not in r and "msg_id" not in r, r
    relayed = [e["record"]["message"] for e in events if e["record"]["message"].startswith("relayed ")]
    assert relayed == [f"relayed {i}" for i in range(100)], relayed[:5]
    rsyslog.stop()
    assert counter(f, "flumen_source_malformed_events_total", source="sys") == 0
    if mode == "tcp":
        assert "Closing a syslog connection" not in f.stderr_text()


# ---------------------------------------------------------------------------------------------
# TLS


@needs_openssl
def test_tls_with_openssl_s_client(flumen_factory, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True, timeout=60)
    f = syslog_flumen(flumen_factory, "tls", f'tls = {{ cert = "{cert}", key = "{key}" }}')
    port = f.ports["sys"]
    msg = "<165>1 2026-01-02T03:04:05.678Z tlshost secureapp 12 ID1 [sec@1 a=\"b\"] over TLS"
    frames = f"{len(msg)} {msg}" + "".join(
        f"<165>Jan  2 03:04:05 tlshost secureapp[12]: line {i}\n" for i in range(5))
    done = subprocess.run(
        [OPENSSL, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
         "-CAfile", str(cert), "-verify_return_error", "-quiet", "-no_ign_eof"],
        input=frames, text=True, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    events = wait_for_events(out_dir(f), 6)
    assert len(events) == 6, events
    r = events[0]["record"]
    assert events[0]["time"] == "2026-01-02T03:04:05.678000000Z"
    assert (r["app_name"], r["hostname"], r["facility"], r["level"]) == \
        ("secureapp", "tlshost", "local4", "INFO"), r
    assert r["structured_data"] == {"sec@1": {"a": "b"}}
    assert [e["record"]["message"] for e in events[1:]] == [f"line {i}" for i in range(5)]
    # Plain text on the TLS port: a failed handshake, logged and counted; TLS clients go on.
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"<13>1 - - - - - - plain\n")
        wait_closed(s)
    wait_for(lambda: counter(f, "flumen_source_rejected_total", source="sys", reason="tls") == 1,
             10, "the failed handshake to be counted")


# ---------------------------------------------------------------------------------------------
# Bad input


def test_bogus_octet_count_closes_only_its_connection(flumen_factory):
    f = syslog_flumen(flumen_factory, "tcp", 'max_message_size = "4KiB"')
    port = f.ports["sys"]

    def frame(msg: str) -> bytes:
        return f"{len(msg.encode())} {msg}".encode()

    with socket.create_connection(("127.0.0.1", port), timeout=10) as good:
        good.sendall(frame("<13>1 - h goodapp - - - good before"))
        for bogus in [b"99999999999 <13>1 - h x - - - absurd count",
                      b"5000 <13>1 - h x - - - above max_message_size"]:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as bad:
                bad.sendall(frame("<13>1 - h badapp - - - kept before the bogus frame") + bogus)
                wait_closed(bad)
        with socket.create_connection(("127.0.0.1", port), timeout=10) as cut:
            cut.sendall(b"60 <13>1 - h x - - - the sender dies inside the frame")
        good.sendall(frame("<13>1 - h goodapp - - - good after"))
        good.sendall(b"<13>1 - h goodapp - - - newline framed too\n")
        events = wait_for_events(out_dir(f), 5)
    messages = sorted(e["record"]["message"] for e in events)
    assert messages == sorted(["good before", "good after", "newline framed too",
                               "kept before the bogus frame", "kept before the bogus frame"])
    wait_for(lambda: counter(f, "flumen_source_rejected_total", source="sys", reason="truncated") == 1,
             10, "the cut frame to be counted")
    assert counter(f, "flumen_source_rejected_total", source="sys", reason="too_large") == 2
    stderr = f.stderr_text()
    assert "Closing a syslog connection" in stderr and "octet count" in stderr, stderr[-2000:]
    assert "127.0.0.1:" in stderr


def test_malformed_and_oversized_messages_are_kept_and_marked(flumen_factory):
    f = syslog_flumen(flumen_factory, "udp", 'max_message_size = "1KiB"')
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"not syslog at all", ("127.0.0.1", f.ports["sys"]))
        s.sendto(b"<200>1 - - - - - - bad priority", ("127.0.0.1", f.ports["sys"]))
        s.sendto(b"<13>1 - h bigapp - - - " + b"y" * 5000, ("127.0.0.1", f.ports["sys"]))
    events = wait_for_events(out_dir(f), 3)
    plain = next(e for e in events if e["record"]["message"] == "not syslog at all")
    assert plain["record"]["parse_error"] == "not a syslog line: no <PRI> and no timestamp"
    assert plain["record"]["source_address"] == "127.0.0.1"
    bad = next(e for e in events if "bad priority" in e["record"]["message"])
    assert bad["record"]["message"] == "<200>1 - - - - - - bad priority"
    assert bad["record"]["parse_error"] == "invalid PRI <200>: above 191"
    big = next(e for e in events if e["record"].get("app_name") == "bigapp")
    assert big["record"]["truncated"] is True
    assert len(big["record"]["message"]) == 1024 - len("<13>1 - h bigapp - - - ")
    assert "parse_error" not in big["record"]
    assert counter(f, "flumen_source_malformed_events_total", source="sys") == 2
    assert counter(f, "flumen_source_truncated_events_total", source="sys") == 1
