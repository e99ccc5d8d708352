"""`flumen validate`, `flumen bench`, and the API endpoints /healthz, /readyz, /metrics."""

from __future__ import annotations

import re
import subprocess

from fluent import sender as fluent_sender

from conftest import FLUMEN_BIN
from helpers import metric_sum, parse_metrics, wait_for, wait_for_events

GOOD = """\
data_dir = "{tmp}/data"

[log]
persistence = "interval"
fsync_interval = "100ms"
max_size = "2GiB"
segment_size = "64MiB"
when_full = "block"

[api]
address = "127.0.0.1:8080"

[sources.fwd]
type = "forward"
address = "127.0.0.1:24224"
label = "mainstream"
max_frame_size = "16MiB"

[sources.web]
type = "http"
address = "127.0.0.1:9880"

[outputs.front]
type = "file"
path = "{tmp}/out/{{{{tag}}}}-%Y%m%d.log"
compression = "gzip"
rotate_size = "100MiB"
rotate_interval = "1h"
batch = {{ max_events = 10000, max_bytes = "4MiB", timeout = "200ms" }}

[outputs.discard]
type = "null"

[outputs.out]
type = "stdout"

[outputs.relay]
type = "forward"
servers = [{{ address = "127.0.0.1:24225", weight = 1 }}]
require_ack = true

[[routes]]
match = ["health*"]
outputs = ["discard"]

[[routes]]
label = "mainstream"
match = ["frontend.**", "frontend*"]
outputs = ["front", "out", "relay"]
"""


def _validate(tmp_path, text: str):
    path = tmp_path / "flumen.toml"
    path.write_text(text)
    proc = subprocess.run([str(FLUMEN_BIN), "validate", str(path)], capture_output=True, text=True, timeout=30)
    return proc.returncode, proc.stdout + proc.stderr


def test_validate_accepts_the_reference_config(tmp_path):
    code, out = _validate(tmp_path, GOOD.format(tmp=tmp_path))
    assert code == 0, out


def _lines_of(text: str, needle: str) -> list[int]:
    """The line containing `needle`, and the header of the table it is in (either is a fair
    place for an error to point at)."""
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines, 1) if needle in line)
    header = next((i for i in range(at, 0, -1) if lines[i - 1].lstrip().startswith("[")), at)
    return sorted({at, header})


def _mentions_line(out: str, lines: list[int]) -> bool:
    return any(re.search(rf"(line\s*{n}\b|:{n}(:|\b))", out, re.I) for n in lines)


def test_validate_rejects_bad_configs_naming_line_and_key(tmp_path):
    good = GOOD.format(tmp=tmp_path)
    cases = [
        # (what, config text, the line that is wrong, words the message must contain)
        ("unknown key", good.replace('when_full = "block"', 'when_ful = "block"'), "when_ful", ["when_ful"]),
        ("bad enum value", good.replace('persistence = "interval"', 'persistence = "sometimes"'),
         "persistence", ["persistence"]),
        ("bad size", good.replace('max_size = "2GiB"', 'max_size = "two gigs"'), "max_size", ["max_size"]),
        ("bad duration", good.replace('fsync_interval = "100ms"', 'fsync_interval = "soon"'),
         "fsync_interval", ["fsync_interval"]),
        ("bad address", good.replace('address = "127.0.0.1:9880"', 'address = "127.0.0.1:99999"'),
         "99999", ["address"]),
        ("unknown source type", good.replace('type = "http"', 'type = "carrier-pigeon"'),
         "carrier-pigeon", ["carrier-pigeon"]),
        ("route to a missing output", good.replace('outputs = ["discard"]', 'outputs = ["nowhere"]'),
         "nowhere", ["nowhere"]),
        ("TOML syntax error", good.replace('[outputs.discard]', '[outputs.discard'), "[outputs.discard", []),
    ]
    failures = []
    for what, text, needle, words in cases:
        code, out = _validate(tmp_path, text)
        line = _lines_of(text, needle)
        problems = []
        if code == 0:
            problems.append("exit 0")
        if not _mentions_line(out, line):
            problems.append(f"does not name line {' or '.join(map(str, line))}")
        problems += [f"does not mention {w!r}" for w in words if w not in out]
        if problems:
            failures.append(f"{what}: {', '.join(problems)}; output: {out.strip()[:400]!r}")
    assert not failures, "\n".join(failures)


def test_health_ready_and_metrics(catch_all):
    f = catch_all
    for path in ("/healthz", "/readyz"):
        r = f.get(path)
        assert r.status_code == 200, (path, r.status_code, r.text)
    s = fluent_sender.FluentSender("metrics", host="127.0.0.1", port=f.ports["fwd"])
    for i in range(10):
        assert s.emit_with_time("t", 1700000000 + i, {"i": i}), s.last_error
    s.close()
    wait_for_events(f.dir("out"), 10, settle=0)
    r = f.get("/metrics")
    assert r.status_code == 200
    assert r.headers.get("Content-Type", "").startswith("text/plain"), r.headers.get("Content-Type")
    assert "# TYPE" in r.text

    def counts():
        samples = parse_metrics(f.metrics_text())
        return (metric_sum(samples, "flumen_source_events_total", source="fwd"),
                metric_sum(samples, "flumen_output_events_total", output="all"))

    try:
        wait_for(lambda: counts() == (10, 10), 5, "source and output counters at 10")
    except AssertionError:
        names = sorted({n for n, _, _ in parse_metrics(f.metrics_text())})
        raise AssertionError(f"(flumen_source_events_total{{source=fwd}}, flumen_output_events_total"
                             f"{{output=all}}) = {counts()}, expected (10, 10); metric names: {names}") from None


def test_bench_drives_a_running_instance(flumen_factory):
    from conftest import forward_source, route
    f = flumen_factory(forward_source() + '\n[outputs.discard]\ntype = "null"\n' + route(["**"], ["discard"]))
    n = 20000
    proc = subprocess.run([str(FLUMEN_BIN), "bench", "--to", f"127.0.0.1:{f.ports['fwd']}", "--events", str(n),
                           "--batch", "1000", "--record-size", "200", "--connections", "2"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (proc.stdout + proc.stderr).strip(), "bench printed no summary"
    wait_for(lambda: metric_sum(parse_metrics(f.metrics_text()), "flumen_source_events_total", source="fwd") == n,
             20, f"{n} events counted by the source")


def test_bench_says_how_far_it_is_while_it_runs(flumen_factory):
    from conftest import forward_source, route
    f = flumen_factory(forward_source() + '\n[outputs.discard]\ntype = "null"\n' + route(["**"], ["discard"]))
    to = f"127.0.0.1:{f.ports['fwd']}"
    # Not a terminal: a plain line every --progress-every.
    proc = subprocess.run([str(FLUMEN_BIN), "bench", "--to", to, "--duration", "2500ms",
                           "--rate", "4000", "--ack", "--progress-every", "500ms"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = re.findall(r"^flumen bench: sent (\d+), acked (\d+), resent 0, \d+ events/s, "
                       r"[\d.]+ s, about ([\d.]+) s left$", proc.stderr, re.M)
    assert len(lines) >= 3, proc.stderr
    sent = [int(sent) for sent, _, _ in lines]
    left = [float(left) for _, _, left in lines]
    assert sent == sorted(sent) and sent[-1] > sent[0] > 0, lines
    assert left == sorted(left, reverse=True), lines
    quiet = subprocess.run([str(FLUMEN_BIN), "bench", "--to", to, "--events", "2000",
                            "--progress-every", "0s"], capture_output=True, text=True, timeout=60)
    assert quiet.returncode == 0 and "flumen bench: sent" not in quiet.stderr, quiet.stderr
    # A terminal (util-linux `script` gives it one): a live line, redrawn in place.
    tty = subprocess.run(["script", "-qec", f"{FLUMEN_BIN} bench --to {to} --events 20000 "
                          "--rate 10000", "/dev/null"], capture_output=True, text=True, timeout=60)
    assert tty.returncode == 0, tty.stdout
    assert re.search(r"\r|\x1b\[2K", tty.stdout), repr(tty.stdout[:300])
    assert re.search(r"sent \d+ \(\d+%\), resent 0, \d+ events/s", tty.stdout), repr(tty.stdout[:300])


SUBCOMMANDS = ["serve", "validate", "default-config", "bench", "run", "query", "deploy", "tail",
               "completions", "man"]


def flumen(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([str(FLUMEN_BIN), *args], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done


def test_completions_for_bash_zsh_and_fish_name_every_command(tmp_path):
    bash = flumen("completions", "bash").stdout
    script = tmp_path / "flumen.bash"
    script.write_text(bash)
    # The script loads in bash, and completing `flumen d` offers the commands starting so.
    probe = subprocess.run(
        ["bash", "-c", f'source "{script}"; COMP_WORDS=(flumen d); COMP_CWORD=1; '
                       '_flumen flumen d flumen; printf "%s\\n" "${COMPREPLY[@]}"'],
        capture_output=True, text=True, timeout=30)
    assert probe.returncode == 0, probe.stderr
    assert set(probe.stdout.split()) == {"default-config", "deploy"}, probe.stdout
    zsh = flumen("completions", "zsh").stdout
    fish = flumen("completions", "fish").stdout
    assert zsh.startswith("#compdef flumen")
    for command in SUBCOMMANDS:
        assert f"'{command}:" in zsh, command
        assert f'-a "{command}"' in fish, command
    bad = subprocess.run([str(FLUMEN_BIN), "completions", "tcsh"], capture_output=True,
                         text=True, timeout=30)
    assert bad.returncode == 2 and "bash" in bad.stderr and "zsh" in bad.stderr, bad.stderr


def test_man_pages_are_generated_from_the_cli(tmp_path):
    page = flumen("man").stdout
    assert page.splitlines()[2].startswith(".TH flumen 1"), page[:200]
    assert ".SH NAME" in page and ".SH SUBCOMMANDS" in page
    for command in SUBCOMMANDS:
        assert "flumen\\-" + command.replace("-", "\\-") + "(1)" in page, command
    flumen("man", "--dir", str(tmp_path / "man"))
    pages = sorted(p.name for p in (tmp_path / "man").iterdir())
    assert {f"flumen-{c}.1" for c in SUBCOMMANDS} | {"flumen.1", "flumen-deploy-start.1"} <= set(pages), pages
    serve = (tmp_path / "man" / "flumen-serve.1").read_text()
    assert "\\-\\-config" in serve and "FLUMEN_CONFIG" in serve
