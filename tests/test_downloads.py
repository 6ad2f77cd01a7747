"""Checkpoint downloads: pinned SHA-256 and size, verified before the rename, nothing left on failure.

A local HTTP server on 127.0.0.1 plays the mirrors; nothing leaves the machine.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.server
import re
import threading

import pytest

from wav2lip_uhq import checkpoints
from wav2lip_uhq.checkpoints import KNOWN_CHECKPOINTS, CheckpointError, download

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """/good: the payload; /huge-announced: a lying Content-Length; /endless: no length, too many bytes."""

    def do_GET(self):
        if self.path == "/good":
            self._reply(PAYLOAD, len(PAYLOAD))
        elif self.path == "/huge-announced":
            self._reply(PAYLOAD, 10 * len(PAYLOAD))
        elif self.path == "/endless":
            self.close_connection = True
            self._reply(PAYLOAD * 3, None)
        else:
            self.send_error(404)

    def _reply(self, body: bytes, length: int | None):
        self.send_response(200)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client hung up, as it should on a too-large body

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    thread.join()


def _pin(monkeypatch, urls, **fields):
    ckpt = dataclasses.replace(
        KNOWN_CHECKPOINTS["wav2lip"], urls=tuple(urls), min_size=1000, sha256=SHA, size=len(PAYLOAD)
    )
    ckpt = dataclasses.replace(ckpt, **fields)
    monkeypatch.setitem(KNOWN_CHECKPOINTS, "wav2lip", ckpt)
    return ckpt


def _failure(tmp_path) -> str:
    with pytest.raises(CheckpointError) as err:
        download("wav2lip", tmp_path)
    msg = str(err.value)
    assert "\n" not in msg and "wav2lip.pth" in msg and str(tmp_path / "wav2lip.pth") in msg
    assert not list(tmp_path.iterdir()), f"left behind: {list(tmp_path.iterdir())}"
    return msg


def test_a_verified_download_lands_in_place(tmp_path, monkeypatch, server):
    _pin(monkeypatch, [f"{server}/good"])
    seen = []
    path = download("wav2lip", tmp_path, progress=lambda done, total: seen.append((done, total)))
    assert path == tmp_path / "wav2lip.pth" and path.read_bytes() == PAYLOAD
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert [p.name for p in tmp_path.iterdir()] == ["wav2lip.pth"]


def test_a_wrong_hash_is_refused_and_leaves_nothing(tmp_path, monkeypatch, server):
    _pin(monkeypatch, [f"{server}/good"], sha256="0" * 64)
    assert "SHA-256" in _failure(tmp_path)


def test_a_wrong_size_is_refused(tmp_path, monkeypatch, server):
    _pin(monkeypatch, [f"{server}/good"], size=len(PAYLOAD) + 1)
    assert f"{len(PAYLOAD)} bytes, the released file has {len(PAYLOAD) + 1}" in _failure(tmp_path)


def test_an_oversized_announcement_is_refused_before_reading(tmp_path, monkeypatch, server):
    _pin(monkeypatch, [f"{server}/huge-announced"], size=None, sha256=None, max_size=2 * len(PAYLOAD))
    assert "announces" in _failure(tmp_path)


def test_a_body_past_the_limit_is_cut_off(tmp_path, monkeypatch, server):
    _pin(monkeypatch, [f"{server}/endless"], size=None, sha256=None, max_size=2 * len(PAYLOAD))
    assert "more than the" in _failure(tmp_path)


def test_the_next_mirror_is_tried(tmp_path, monkeypatch, server):
    _pin(monkeypatch, [f"{server}/missing", f"{server}/good"])
    assert download("wav2lip", tmp_path).read_bytes() == PAYLOAD


def test_every_known_checkpoint_is_pinned():
    for ckpt in KNOWN_CHECKPOINTS.values():
        assert ckpt.sha256 and re.fullmatch(r"[0-9a-f]{64}", ckpt.sha256), ckpt.name
        limit = checkpoints._size_limit(ckpt)
        assert ckpt.min_size < limit <= ckpt.max_size, ckpt.name
        # torch.hub's convention: a name ending in -<hex> carries the first hex digits of its SHA-256
        for url in ckpt.urls:
            tag = re.search(r"-([0-9a-f]{8,})\.", url.rsplit("/", 1)[-1])
            if tag:
                assert ckpt.sha256.startswith(tag.group(1)), (ckpt.name, url)
