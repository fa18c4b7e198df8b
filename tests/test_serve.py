"""The REST API: contract, validation (422), limits (413), request batching and overload (503)."""

import asyncio
import json
import socket
import threading
import time

import pytest
from fastapi.testclient import TestClient
from live_server import serving
from typer.testing import CliRunner

try:  # the client Starlette's TestClient uses; plain httpx on Python 3.10
    import httpx2 as httpx
except ImportError:
    import httpx

from spacy_emotion import __version__
from spacy_emotion.cli import app as cli_app
from spacy_emotion.cli import serve as serve_cli
from spacy_emotion.component.speed import SpeedOptions
from spacy_emotion.labels import LABELS
from spacy_emotion.serving.classify import build_pipeline, classify, classify_one
from spacy_emotion.serving.rest import DEFAULT_MAX_BATCH, DEFAULT_MAX_CHARS, DEFAULT_MAX_QUEUE, create_app, is_loopback

MAX_CHARS, MAX_BATCH = 120, 4
TEXTS = ["i feel so happy today", "i am scared and nervous. but glad you came!", "i am furious", ""]


@pytest.fixture(scope="module")
def nlp(trained_pipeline):
    return build_pipeline(str(trained_pipeline))


@pytest.fixture(scope="module")
def hf_nlp(hf_checkpoint):
    """A pipeline over a tiny random checkpoint: fast to build, for tests of the server itself."""
    return build_pipeline(str(hf_checkpoint))


@pytest.fixture(scope="module")
def client(nlp):
    with TestClient(create_app(nlp, max_chars=MAX_CHARS, max_batch=MAX_BATCH), raise_server_exceptions=False) as c:
        yield c


def check_result(result, expected):
    assert list(result) == [k for k in ("emotion", "score", "cats", "sentences") if k in expected]
    assert list(result["cats"]) == list(LABELS)
    assert sum(result["cats"].values()) == pytest.approx(1.0, abs=1e-4)
    assert result["emotion"] == expected["emotion"]
    assert result["cats"] == pytest.approx(expected["cats"], abs=1e-4)


def test_health_and_labels(client, trained_pipeline):
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model_loaded"] is True
    assert health["version"] == __version__
    assert health["model"] == str(trained_pipeline) and health["backend"] == "spacy"
    assert health["limits"]["max_chars"] == MAX_CHARS and health["limits"]["max_batch"] == MAX_BATCH
    assert health["batching"]["enabled"] is True
    assert health["runtime"] == "torch" and health["linear_layers"] == SpeedOptions().linear_format(
        "cpu"
    )  # "auto" on this CPU
    assert health["fast_path"] is True  # the trained pipeline runs batched
    assert client.get("/labels").json() == {"labels": list(LABELS)}


def test_defaults_are_shown_in_help():
    assert (DEFAULT_MAX_CHARS, DEFAULT_MAX_BATCH, DEFAULT_MAX_QUEUE) == (10_000, 64, 256)
    assert (serve_cli.MAX_CHARS, serve_cli.MAX_BATCH, serve_cli.MAX_QUEUE) == (10_000, 64, 256)
    result = CliRunner().invoke(cli_app, ["serve", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "10000" in result.output and "413" in result.output and "127.0.0.1" in result.output
    assert "--max-queue" in result.output and "256" in result.output and "503" in result.output


@pytest.mark.parametrize("text", TEXTS)
def test_predict_matches_the_component(client, nlp, text):
    response = client.post("/predict", json={"text": text})
    assert response.status_code == 200
    check_result(response.json(), classify_one(nlp, text))
    assert "sentences" not in response.json()


def test_predict_sentences(client, nlp):
    text = TEXTS[1]
    body = client.post("/predict", json={"text": text, "sentences": True}).json()
    expected = classify_one(nlp, text, sentences=True)
    check_result(body, expected)
    assert len(body["sentences"]) == len(expected["sentences"]) == 2
    for sent in body["sentences"]:
        assert text[sent["start_char"] : sent["end_char"]] == sent["text"]
        assert list(sent["cats"]) == list(LABELS)


def test_batch_keeps_order(client, nlp):
    body = client.post("/predict/batch", json={"texts": TEXTS}).json()
    assert list(body) == ["results"] and len(body["results"]) == len(TEXTS)
    for result, expected in zip(body["results"], classify(nlp, TEXTS)):
        check_result(result, expected)
    with_sents = client.post("/predict/batch", json={"texts": TEXTS[:2], "sentences": True}).json()["results"]
    assert [len(r["sentences"]) for r in with_sents] == [1, 2]


@pytest.mark.parametrize(
    "path,content",
    [
        ("/predict", b'{"text": "unterminated'),
        ("/predict", b"not json at all"),
        ("/predict", b'{"text": 5}'),
        ("/predict", b'{"text": null}'),
        ("/predict", b'{"text": ["a"]}'),
        ("/predict", b"{}"),
        ("/predict", b'{"txt": "typo in the field name"}'),
        ("/predict", b'{"text": "a", "sentences": "yes"}'),
        ("/predict/batch", b'{"texts": "not a list"}'),
        ("/predict/batch", b'{"texts": []}'),
        ("/predict/batch", b'{"texts": ["a", 2]}'),
        ("/predict/batch", b'{"text": "a"}'),
    ],
)
def test_invalid_requests_are_422(client, path, content):
    response = client.post(path, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 422
    body = response.json()
    assert isinstance(body["detail"], list) and body["detail"]
    assert isinstance(body["message"], str) and body["message"]


def test_422_messages_say_what_is_wrong(client):
    assert (
        "Malformed JSON"
        in client.post("/predict", content=b"{bad", headers={"Content-Type": "application/json"}).json()["message"]
    )
    assert client.post("/predict", json={"text": 5}).json()["message"] == "body.text: Input should be a valid string"
    assert "Extra inputs" in client.post("/predict", json={"text": "a", "lang": "de"}).json()["message"]


def test_a_lone_surrogate_is_422_not_a_model_error(client):
    """JSON may escape a lone surrogate, which no UTF-8 text holds and spaCy's tokenizer rejects."""
    response = client.post(
        "/predict", content=b'{"text": "i feel \\ud800 glad"}', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422 and "lone surrogate (U+D800)" in response.json()["detail"]
    response = client.post(
        "/predict/batch", content=b'{"texts": ["ok", "\\udfff"]}', headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422 and response.json()["detail"].startswith("texts[1] is not valid UTF-8 text")
    assert (
        client.post("/predict", json={"text": "i feel \U0001f600 glad"}).status_code == 200
    )  # a real astral character


def test_limits_are_413(client):
    assert client.post("/predict", json={"text": "a" * MAX_CHARS}).status_code == 200
    response = client.post("/predict", json={"text": "a" * (MAX_CHARS + 1)})
    assert response.status_code == 413 and str(MAX_CHARS) in response.json()["detail"]
    assert client.post("/predict/batch", json={"texts": ["a"] * MAX_BATCH}).status_code == 200
    response = client.post("/predict/batch", json={"texts": ["a"] * (MAX_BATCH + 1)})
    assert response.status_code == 413 and str(MAX_BATCH) in response.json()["detail"]
    response = client.post("/predict/batch", json={"texts": ["ok", "a" * (MAX_CHARS + 1)]})
    assert response.status_code == 413 and "texts[1]" in response.json()["detail"]
    huge = b'{"text": "' + b"a" * (client.get("/health").json()["limits"]["max_body_bytes"]) + b'"}'
    assert client.post("/predict", content=huge, headers={"Content-Type": "application/json"}).status_code == 413


def test_docs_and_schema(client):
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/predict", "/predict/batch", "/health", "/labels"} <= set(paths)
    assert "413" in paths["/predict"]["post"]["responses"] and "422" in paths["/predict"]["post"]["responses"]


def test_unknown_route_and_method(client):
    assert client.get("/predict").status_code == 405
    assert client.get("/nope").status_code == 404


async def _concurrent(app, payloads):
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as ac:
        responses = await asyncio.gather(*(ac.post("/predict", json=p) for p in payloads))
    return [r.json() for r in responses]


def test_concurrent_requests_share_one_model_call(nlp):
    texts = [f"i feel {w} today" for w in ("happy", "sad", "angry", "scared", "amazed", "loving", "glad", "lonely")]
    # a long wait that ends when max_batch_texts texts are queued: the 8 requests form one group
    app = create_app(nlp, batching=True, batch_wait_ms=10_000, max_batch_texts=len(texts))
    results = asyncio.run(_concurrent(app, [{"text": t} for t in texts]))
    assert app.state.batcher.stats == {"model_calls": 1, "requests": 8, "texts": 8}
    for result, expected in zip(results, classify(nlp, texts)):
        check_result(result, expected)


def test_grouping_keeps_the_sentences_setting_per_request(nlp):
    texts = ["i am happy. i am sad.", "i am mad. so mad.", "i feel glad", "i feel scared"]
    app = create_app(nlp, batching=True, batch_wait_ms=10_000, max_batch_texts=len(texts))
    payloads = [{"text": t, "sentences": i % 2 == 0} for i, t in enumerate(texts)]
    results = asyncio.run(_concurrent(app, payloads))
    assert app.state.batcher.stats["model_calls"] == 2  # one per setting
    for payload, result in zip(payloads, results):
        assert ("sentences" in result) == payload["sentences"]
        check_result(result, classify_one(nlp, payload["text"], sentences=payload["sentences"]))


def test_without_batching_each_request_runs_alone(nlp):
    app = create_app(nlp, batching=False)
    results = asyncio.run(_concurrent(app, [{"text": t} for t in TEXTS]))
    assert app.state.batcher.stats == {"model_calls": len(TEXTS), "requests": len(TEXTS), "texts": len(TEXTS)}
    for result, expected in zip(results, classify(nlp, TEXTS)):
        check_result(result, expected)


def test_a_model_failure_is_a_500_and_the_server_goes_on(nlp, monkeypatch):
    app = create_app(nlp)
    batcher = app.state.batcher
    real = batcher._run_model
    calls = []

    def fail_once(texts, sentences):
        calls.append(texts)
        if len(calls) == 1:
            raise RuntimeError("model exploded")
        return real(texts, sentences)

    monkeypatch.setattr(batcher, "_run_model", fail_once)
    with TestClient(app, raise_server_exceptions=False) as c:
        assert c.post("/predict", json={"text": "i feel glad"}).status_code == 500
        assert c.post("/predict", json={"text": "i feel glad"}).status_code == 200


def test_a_failing_request_does_not_fail_the_requests_grouped_with_it(nlp, monkeypatch):
    texts = ["i feel happy today", "BOOM", "i am so sad", "i am scared"]
    app = create_app(nlp, batching=True, batch_wait_ms=10_000, max_batch_texts=len(texts))
    batcher = app.state.batcher
    real = batcher._run_model

    def fail_on_boom(group, sentences):
        if "BOOM" in group:
            raise RuntimeError("model exploded")
        return real(group, sentences)

    monkeypatch.setattr(batcher, "_run_model", fail_on_boom)

    async def post_all():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as ac:
            return await asyncio.gather(*(ac.post("/predict", json={"text": t}) for t in texts), return_exceptions=True)

    responses = asyncio.run(post_all())
    # the group failed as a whole, then each request ran alone: only "BOOM" fails
    assert isinstance(responses[1], RuntimeError) or responses[1].status_code == 500
    for i in (0, 2, 3):
        assert responses[i].status_code == 200
        check_result(responses[i].json(), classify_one(nlp, texts[i]))


def _blocking_model(batcher, monkeypatch):
    """Make every model call wait for the returned event (set it to let them run)."""
    release = threading.Event()
    real = batcher._run_model

    def wait_then_run(texts, sentences):
        release.wait(timeout=120)
        return real(texts, sentences)

    monkeypatch.setattr(batcher, "_run_model", wait_then_run)
    return release


@pytest.mark.parametrize("batching", [True, False])
def test_a_full_queue_sheds_with_503_and_health_still_answers(hf_nlp, monkeypatch, batching):
    app = create_app(hf_nlp, batching=batching, max_queue=2)
    batcher = app.state.batcher
    release = _blocking_model(batcher, monkeypatch)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as ac:
            held = [asyncio.create_task(ac.post("/predict", json={"text": t})) for t in ("i feel glad", "i am sad")]
            while batcher.queued < 2:  # both admitted: one in the (blocked) model call, one waiting
                await asyncio.sleep(0.01)
            shed = await ac.post("/predict", json={"text": "i am furious"})
            shed_batch = await ac.post("/predict/batch", json={"texts": ["i am furious"]})
            health = await ac.get("/health")
            labels = await ac.get("/labels")
            release.set()
            answered = await asyncio.gather(*held)
            after = await ac.post("/predict", json={"text": "i am furious"})
            health_after = await ac.get("/health")
        return shed, shed_batch, health, labels, answered, after, health_after

    shed, shed_batch, health, labels, answered, after, health_after = asyncio.run(scenario())
    for response in (shed, shed_batch):
        assert response.status_code == 503
        assert int(response.headers["Retry-After"]) >= 1
        assert "limit is 2" in response.json()["detail"]
    assert health.status_code == 200 and health.json()["queue"] == {"max_requests": 2, "queued": 2, "shed": 2}
    assert labels.status_code == 200
    assert [r.status_code for r in answered] == [200, 200]
    check_result(answered[0].json(), classify_one(hf_nlp, "i feel glad"))
    assert after.status_code == 200  # drained: requests are served again
    check_result(after.json(), classify_one(hf_nlp, "i am furious"))
    assert health_after.json()["queue"] == {"max_requests": 2, "queued": 0, "shed": 2}


def _raw_request(url, text):
    """Send POST /predict on a raw socket; RETURNS the open socket (the answer unread)."""
    host, port = url.removeprefix("http://").split(":")
    body = json.dumps({"text": text}).encode()
    head = f"POST /predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
    head += f"Content-Length: {len(body)}\r\n\r\n"
    sock = socket.create_connection((host, int(port)), timeout=60)
    sock.sendall(head.encode() + body)
    return sock


def _wait_for(condition, what):
    deadline = time.monotonic() + 60  # a bound on a hang, not a timing assertion
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


@pytest.mark.parametrize("batching", [True, False])
def test_a_client_that_disconnects_mid_request_costs_nothing(hf_nlp, monkeypatch, batching):
    """A real server: one request in the (held) model call, one waiting whose client hangs up.
    No exception reaches the server, the queue drains, and the next requests are answered."""
    app = create_app(hf_nlp, batching=batching)
    batcher = app.state.batcher
    release = _blocking_model(batcher, monkeypatch)
    errors = []

    async def recording(scope, receive, send):  # every exception the app raises
        try:
            await app(scope, receive, send)
        except BaseException as err:
            errors.append(err)
            raise

    with serving(recording) as url:
        kept = _raw_request(url, "i feel glad")
        _wait_for(lambda: batcher.queued == 1, "the first request")
        gone = _raw_request(url, "i am sad")
        _wait_for(lambda: batcher.queued == 2, "the second request")
        gone.close()  # the client leaves while its request waits
        if batching:  # its texts leave the queue before any model call takes them
            _wait_for(lambda: batcher.queued == 1, "the request to be dropped")
        with httpx.Client(base_url=url, trust_env=False) as client:
            assert client.get("/health").status_code == 200  # answered while the model is held
            release.set()
            answer = kept.recv(65536).decode()
            kept.close()
            _wait_for(lambda: batcher.queued == 0, "the queue to drain")
            assert client.post("/predict", json={"text": "i am sad"}).status_code == 200
            assert client.get("/health").json()["queue"]["queued"] == 0
    assert answer.startswith("HTTP/1.1 200")
    assert errors == []
    # with batching the dropped request never reached the model; without, its call ran to the end
    assert batcher.stats["texts"] == (2 if batching else 3)


def test_max_queue_must_be_positive(hf_nlp):
    with pytest.raises(ValueError, match="max_queue"):
        create_app(hf_nlp, max_queue=0)


def test_is_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.com")


def test_serve_cli_fails_cleanly_without_a_model(tmp_path):
    result = CliRunner().invoke(cli_app, ["serve", "--model", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert "Can't load the emotion model" in result.output


@pytest.mark.parametrize(
    "command,blocked,extra",
    [
        (["serve", "--model", "x"], "fastapi", "serve"),
        (["explore", "out", "--data", "x"], "matplotlib", "reports"),
        (["embeddings", "out", "--data", "x"], "umap", "reports"),
        (["analyze", __file__, "out"], "matplotlib", "reports"),  # any existing file: the check comes first
    ],
)
def test_a_missing_extra_is_named_with_its_pip_command(monkeypatch, command, blocked, extra):
    import sys

    monkeypatch.setitem(sys.modules, blocked, None)  # importlib finds no such module
    result = CliRunner().invoke(cli_app, command, terminal_width=200)
    assert result.exit_code == 2
    assert (
        f"needs the '{extra}' extra: {blocked}" in result.output
        and f'pip install "spacy-emotion[{extra}]"' in result.output
    )


def test_cpu_threads_apply_to_the_model_thread(nlp):
    import torch

    app = create_app(nlp, cpu_threads=1)
    with TestClient(app) as c:
        assert c.post("/predict", json={"text": "i feel glad"}).status_code == 200
        assert c.get("/health").json()["cpu_threads"] == 1
    assert app.state.batcher._executor.submit(torch.get_num_threads).result() == 1


def test_app_with_onnx_runtime(trained_pipeline, nlp):
    """The speed settings reach the component: ONNX Runtime int8 serves the same labels' shape, /health says so."""
    onnx_app = create_app(str(trained_pipeline), speed={"runtime": "onnx", "quantize": "int8"})
    with TestClient(onnx_app) as c:
        health = c.get("/health").json()
        assert health["runtime"] == "onnx" and health["linear_layers"] == "int8"
        got = c.post("/predict", json={"text": TEXTS[0]}).json()
    expected = classify_one(nlp, TEXTS[0])
    assert list(got["cats"]) == list(LABELS)
    assert got["cats"] == pytest.approx(expected["cats"], abs=0.05)  # int8 (see test_onnx_runtime)
