"""A throwaway PostgreSQL cluster for a test, run by scripts/postgres.sh from Debian's
`postgresql` (installed by scripts/setup.sh): each `Postgres` has a cluster of its own in a
temporary directory, on a free 127.0.0.1 port, with trust authentication and a database
`flumen` owned by a role `flumen` (`url`). `stop()` then `start()` again keeps the data, as a
database server that went away and came back does; `remove()` stops it and deletes it.

    pg = Postgres().start()
    ... pg.url ...               # postgres://flumen@127.0.0.1:PORT/flumen
    pg.stop(); pg.start()
    pg.remove()

The `postgres` fixture of conftest.py yields a started one and removes it afterwards."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from conftest import REPO_ROOT, free_port

SCRIPT = REPO_ROOT / "scripts" / "postgres.sh"

# initdb and a start take about a second; a loaded machine may need more.
TIMEOUT = 120.0


class Postgres:
    def __init__(self, port: int | None = None):
        # Under /tmp rather than pytest's tmp_path: as root, the server runs as the `postgres`
        # user, who cannot enter pytest's directories (mode 0700).
        self.dir = Path(tempfile.mkdtemp(prefix="flumen-e2e-postgres-"))
        self.port = port or free_port()
        self.url = f"postgres://flumen@127.0.0.1:{self.port}/flumen"
        self.running = False

    def _script(self, *args: str) -> str:
        p = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True,
                           timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise AssertionError(f"scripts/postgres.sh {' '.join(args)} exited with {p.returncode}:"
                                 f"\n{p.stderr}")
        return p.stdout.strip()

    def start(self) -> "Postgres":
        url = self._script("start", str(self.dir), str(self.port))
        assert url == self.url, f"scripts/postgres.sh printed {url!r}, expected {self.url!r}"
        self.running = True
        return self

    def stop(self) -> None:
        self._script("stop", str(self.dir))
        self.running = False

    def log(self) -> str:
        """The server's log (for a failing test's report)."""
        for path in (self.dir / "server.log", self.dir / "cluster" / "server.log"):
            try:
                return path.read_text(errors="replace")
            except (FileNotFoundError, PermissionError):
                continue
        return ""

    def remove(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __repr__(self) -> str:
        return f"Postgres({self.url}, dir={self.dir})"
