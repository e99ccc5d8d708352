"""The web page as HTTP serves it (what tests/browser checks in Chromium stands on this):

- test_the_page_and_its_files_are_served_from_the_binary: `/` and the page's own paths
  (`/search`, `/deployments`, `/deployments/ID`) answer the same `index.html`; every file it
  links (`/assets/...`) answers 200 with its content type; every answer carries the
  Content-Security-Policy and an ETag, and asking again with `If-None-Match` gets 304 with no
  body; an unknown file and a path out of the folder (`..`) get 404; the API beside it is
  unchanged.
- test_serve_prints_where_the_page_is: `flumen serve` prints `open http://localhost:PORT`
  with the API's port.
"""

from __future__ import annotations

import re

import requests

from helpers import wait_for

from conftest import forward_source, route

MINIMAL = forward_source() + '\n[outputs.discard]\ntype = "null"\n' + route(["**"], ["discard"])


def test_the_page_and_its_files_are_served_from_the_binary(flumen_factory):
    f = flumen_factory(MINIMAL)
    index = f.get("/")
    assert index.status_code == 200
    assert index.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in index.headers["content-security-policy"]
    assert index.headers["x-content-type-options"] == "nosniff"
    for path in ["/search", "/deployments", "/deployments/d-42"]:
        routed = f.get(path)
        assert routed.status_code == 200, path
        assert routed.content == index.content, path

    linked = re.findall(r'(?:src|href)="(/assets/[^"]+)"', index.text)
    assert any(p.endswith(".js") for p in linked), linked
    assert any(p.endswith(".css") for p in linked), linked
    expected_type = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for path in linked:
        answer = f.get(path)
        assert answer.status_code == 200, path
        assert answer.content, path
        suffix = path[path.rfind("."):]
        assert answer.headers["content-type"].startswith(expected_type[suffix]), path
        etag = answer.headers["etag"]
        assert answer.headers["cache-control"] == "no-cache", path
        again = f.get(path, headers={"If-None-Match": etag})
        assert again.status_code == 304, path
        assert again.content == b"", path
        assert again.headers["etag"] == etag, path
        stale = f.get(path, headers={"If-None-Match": '"0000000000000000"'})
        assert stale.status_code == 200 and stale.content == answer.content, path

    assert f.get("/assets/no-such-file.js").status_code == 404
    # requests would normalise `..` away: send it as it is.
    raw = requests.Request("GET", f.api + "/assets/../Cargo.toml").prepare()
    raw.url = f.api + "/assets/../Cargo.toml"
    with requests.Session() as session:
        escaped = session.send(raw, timeout=10)
    assert escaped.status_code == 404
    assert b"[package]" not in escaped.content
    assert f.get("/healthz").text == "ok\n"


def test_serve_prints_where_the_page_is(flumen_factory):
    f = flumen_factory(MINIMAL)
    port = f.ports["api"]
    wait_for(lambda: f"open http://localhost:{port}" in f.stderr_text(), 10,
             "flumen serve's open line on stderr")
