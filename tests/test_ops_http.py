"""The ops endpoints listen apart from the enrollment page: /healthz and /metrics on
[http] ops_host/ops_port, nothing of them on the public listener."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest

from gateway import ops_http
from gateway.config import ConfigError, build_config


def fetch(port: int, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


async def test_ops_endpoints_answer_only_on_the_ops_listener(gateway, monkeypatch):
    import asyncio
    get = lambda port, path: asyncio.to_thread(fetch, port, path)  # noqa: E731
    assert gateway.ops_port != gateway.http_port
    status, body = await get(gateway.ops_port, "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body = await get(gateway.ops_port, "/metrics")
    assert status == 200 and b"portal_" in body
    for path in ("/healthz", "/metrics", "/metrics/", "/healthz?x=1", "/%2e%2e/metrics"):
        assert (await get(gateway.http_port, path))[0] == 404, path
    for path in ("/enroll", "/enroll?token=x", "/"):
        assert (await get(gateway.ops_port, path))[0] == 404, path

    def down(_services):
        raise OSError("database unreachable")
    monkeypatch.setattr(ops_http, "_db_answers", down)
    status, body = await get(gateway.ops_port, "/healthz")
    assert status == 503 and json.loads(body)["status"] == "unavailable"


def test_ops_listener_defaults_to_loopback_and_may_not_share_the_public_port(tmp_path):
    cfg = build_config({}, tmp_path / "c.toml")
    assert cfg.http.ops_host == "127.0.0.1" and cfg.http.ops_port != cfg.http.port
    with pytest.raises(ConfigError, match=r"\[http\] ops_port: must differ"):
        build_config({"http": {"port": 9000, "ops_port": 9000}}, tmp_path / "c.toml")
    with pytest.raises(ConfigError, match=r"\[http\] ops_port"):
        build_config({"http": {"ops_port": 70000}}, tmp_path / "c.toml")
