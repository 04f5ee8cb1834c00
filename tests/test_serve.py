"""rfm serve: a real service on an ephemeral loopback port, real HTTP requests, hostile ones included."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import ROOT

TOKEN = "t" * 43


@pytest.fixture(scope="module")
def service(tiny_artifact, tmp_path_factory):
    import uvicorn
    from rfm.runtime import RewardModel

    from rfm.service import create_app

    store = tmp_path_factory.mktemp("serve_store")
    model = RewardModel.load(tiny_artifact, device="cpu", store=store)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(model, TOKEN, max_body=200_000), host="127.0.0.1", port=port,
                                           log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not server.started and time.time() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"http://127.0.0.1:{port}", model
    server.should_exit = True
    thread.join(10)


def call(base: str, method: str, path: str, body=None, token: str | None = TOKEN, raw: bytes | None = None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_rerank_feedback_and_users_over_http(service):
    base, _ = service
    assert call(base, "GET", "/v1/health", token=None) == (200, {"status": "ok", "api": "v1"})
    status, info = call(base, "GET", "/v1/model")
    assert status == 200 and info["features"] == 8 and info["precision"] == "int8"
    drafts = ["- one\n- two\n- three", "Maybe, perhaps?", "A plain answer.", "no"]
    status, ranked = call(base, "POST", "/v1/rerank", {"user": "ann", "prompt": "p", "candidates": drafts, "top_k": 2})
    assert status == 200 and len(ranked["candidates"]) == 2
    status, pair = call(base, "POST", "/v1/next-question", {"user": "ann", "prompt": "p", "candidates": drafts})
    assert status == 200 and len(pair["pair"]) == 2
    status, done = call(base, "POST", "/v1/feedback", {"user": "ann", "prompt": "p", "chosen": drafts[0],
                                                       "rejected": drafts[3]})
    assert status == 200 and done["choices"] == 1
    status, summary = call(base, "GET", "/v1/users/ann")
    assert status == 200 and summary["choices"] == 1 and len(summary["weights"]) == 8
    status, exported = call(base, "GET", "/v1/users/ann/export")
    assert status == 200 and exported["choices"] == [["p", drafts[0], drafts[3]]]
    assert call(base, "DELETE", "/v1/users/ann") == (200, {"user": "ann", "deleted": True})
    assert call(base, "GET", "/v1/users/ann")[0] == 404
    status, schema = call(base, "GET", "/openapi.json", token=None)
    assert status == 200 and "/v1/rerank" in schema["paths"]


@pytest.mark.parametrize("token, path, body, raw, status, code", [
    (None, "/v1/score", {"user": "u", "prompt": "p", "candidates": ["a"]}, None, 401, "unauthorized"),
    ("wrong", "/v1/score", {"user": "u", "prompt": "p", "candidates": ["a"]}, None, 401, "unauthorized"),
    (TOKEN, "/v1/score", None, b"{not json", 400, "bad_json"),
    (TOKEN, "/v1/score", None, b"[1, 2]", 400, "bad_json"),
    (TOKEN, "/v1/score", None, b'{"user": "u", "prompt": "p", "candidates": ["a"], "x": NaN}', 400, "bad_json"),
    (TOKEN, "/v1/score", {"user": "u", "prompt": "p", "candidates": []}, None, 400, "bad_field"),
    (TOKEN, "/v1/score", {"user": "u", "prompt": 3, "candidates": ["a"]}, None, 400, "bad_field"),
    (TOKEN, "/v1/score", {"user": "u", "prompt": "p", "candidates": ["a"] * 300}, None, 413, "too_many_candidates"),
    (TOKEN, "/v1/score", {"user": "u", "prompt": "p", "candidates": ["x" * 300_000]}, None, 413, "body_too_large"),
    (TOKEN, "/v1/score", {"user": "u", "prompt": "p" * 100_001, "candidates": ["a"]}, None, 413, "text_too_long"),
    (TOKEN, "/v1/rerank", {"user": "u", "prompt": "p", "candidates": ["a"], "top_k": 0}, None, 400, "bad_field"),
    (TOKEN, "/v1/feedback", {"user": "u", "prompt": "p", "chosen": "a", "rejected": "a"}, None, 400, "bad_request"),
    (TOKEN, "/v1/feedback", {"user": "", "prompt": "p", "chosen": "a", "rejected": "b"}, None, 400, "bad_request"),
])
def test_bad_requests_get_json_4xx_and_the_service_keeps_serving(service, token, path, body, raw, status, code):
    base, _ = service
    got_status, got = call(base, "POST", path, body, token=token, raw=raw)
    assert (got_status, got["error"]["code"]) == (status, code) and "Traceback" not in json.dumps(got)
    assert call(base, "GET", "/v1/health", token=None)[0] == 200


def test_concurrent_feedback_loses_nothing(service):
    base, model = service

    def one(i: int) -> int:
        return call(base, "POST", "/v1/feedback", {"user": "bob", "prompt": f"p{i}", "chosen": f"a long answer {i}",
                                                   "rejected": "no"})[0]

    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(one, range(24))) == {200}
    assert model.store.read("bob").feedback_total == 24


def test_python_and_node_clients(service):
    base, _ = service
    out = subprocess.run([sys.executable, str(ROOT / "examples" / "serve_client.py"), base, TOKEN],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "best for carol" in out.stdout, out.stderr
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the JavaScript client was not run")
    out = subprocess.run([node, str(ROOT / "examples" / "serve_client.mjs"), base, TOKEN],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "best for dora" in out.stdout, out.stderr


def test_token_is_created_owner_only_and_reused(tmp_path):
    import os

    from rfm.service import load_or_create_token

    path = tmp_path / "serve-token"
    first = load_or_create_token(path)
    assert len(first) >= 32 and load_or_create_token(path) == first
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o600


def test_serve_refuses_a_non_loopback_host_without_allow_remote(tiny_artifact):
    from click.testing import CliRunner

    from rfm.cli.main import cli

    result = CliRunner().invoke(cli, ["serve", str(tiny_artifact), "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "--allow-remote" in result.output


class SlowModel:
    """Sleeps as long as the prompt says, then ranks the first candidate first."""

    def rerank(self, user, prompt, candidates, top_k=None):
        from rfm.runtime.model import Ranked

        time.sleep(float(prompt))
        return [Ranked(0, candidates[0], 0.0)]


@contextlib.contextmanager
def slow_service(**limits):
    import uvicorn

    from rfm.service import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(SlowModel(), None, **limits), host="127.0.0.1", port=port,
                                           log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def rerank_taking(seconds: float) -> dict:
    return {"user": "u", "prompt": str(seconds), "candidates": ["a", "b"]}


def test_requests_past_the_in_flight_limit_get_503_busy_at_once():
    with slow_service(max_in_flight=1) as base:
        with ThreadPoolExecutor(3) as pool:
            statuses = sorted(s for s, _ in pool.map(lambda _: call(base, "POST", "/v1/rerank", rerank_taking(1.0),
                                                                    token=None), range(3)))
        assert statuses[0] == 200 and 503 in statuses
        assert call(base, "POST", "/v1/rerank", rerank_taking(0), token=None)[0] == 200  # the slot is free again


def test_a_slow_request_gets_504_and_keeps_its_slot_until_its_work_ends():
    with slow_service(max_in_flight=1, timeout=0.3) as base:
        t = time.perf_counter()
        status, body = call(base, "POST", "/v1/rerank", rerank_taking(1.5), token=None)
        assert (status, body["error"]["code"]) == (504, "timeout") and time.perf_counter() - t < 1.2
        # the timed-out work still runs: the one slot stays taken, so the limit holds
        assert call(base, "POST", "/v1/rerank", rerank_taking(0), token=None)[1]["error"]["code"] == "busy"
        time.sleep(1.5)
        assert call(base, "POST", "/v1/rerank", rerank_taking(0), token=None)[0] == 200


def test_readme_curl_example_answers(service):
    """The README's curl call, pointed at this test service, gets a ranking back."""
    base, _ = service
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed: the README's curl example was not run")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start = readme.index("curl -s -H")
    command = readme[start : readme.index("```", start)].strip()
    command = command.replace("$(cat ~/.local/share/rfm/serve-token)", TOKEN).replace("http://127.0.0.1:8765", base)
    out = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=60)
    ranked = json.loads(out.stdout)
    assert out.returncode == 0 and {c["text"] for c in ranked["candidates"]} == {"Hello there!", "hi"}


def test_a_chunked_body_over_the_limit_is_refused_without_a_length_header(service):
    """No Content-Length (chunked upload): the service stops reading at the limit and answers 413."""
    import http.client

    base, _ = service
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=60)
    chunks = (b"x" * 50_000 for _ in range(5))  # 250 kB, over the test service's 200 kB
    connection.request("POST", "/v1/score", body=chunks, headers={"Authorization": f"Bearer {TOKEN}"},
                       encode_chunked=True)
    response = connection.getresponse()
    assert response.status == 413 and json.loads(response.read())["error"]["code"] == "body_too_large"
    connection.close()
    assert call(base, "GET", "/v1/health", token=None)[0] == 200


def test_a_declared_huge_body_is_refused_before_it_is_sent(service):
    """Content-Length over the limit: 413 at once, without waiting for (or buffering) the body."""
    base, _ = service
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(f"POST /v1/score HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
                     "Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n".encode())
        answer = b""
        while b"body_too_large" not in answer and (chunk := conn.recv(4096)):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413") and b"body_too_large" in answer
