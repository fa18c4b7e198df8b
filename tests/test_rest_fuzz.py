"""The REST API fuzzed from its own OpenAPI schema (schemathesis).

Every operation gets generated requests, valid and invalid (wrong types,
missing and unknown fields, texts and lists over the limits); every answer
must be a declared status code with a body, content type and headers that
match the schema, and never a 5xx. Raw bodies that no schema generates
(malformed JSON, other content types, oversize bodies) and the 500 and 503
answers are checked against the same schema.
"""

import json

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from spacy_emotion.serving.classify import build_pipeline
from spacy_emotion.serving.rest import create_app

MAX_CHARS, MAX_BATCH = 40, 3  # small, so that generated texts and lists reach the 413 limits


@pytest.fixture(scope="module")
def app(hf_checkpoint):
    return create_app(build_pipeline(str(hf_checkpoint)), max_chars=MAX_CHARS, max_batch=MAX_BATCH)


@pytest.fixture(scope="module")
def api_schema(app):
    # a text or list over the limits is rejected with 413 (checked by the endpoint, stated in the schema)
    rejected = {"expected-statuses": [400, 413, 422]}
    config = schemathesis.Config.from_dict({"checks": {"negative_data_rejection": rejected}})
    return schemathesis.openapi.from_asgi("/openapi.json", app, config=config)


@pytest.fixture(scope="module")
def client(app):
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


OPERATIONS = [("/predict", "POST"), ("/predict/batch", "POST"), ("/health", "GET"), ("/labels", "GET")]


def test_the_schema_lists_every_operation(api_schema):
    listed = {(op.path, op.method.upper()) for op in (r.ok() for r in api_schema.get_all_operations())}
    assert listed == set(OPERATIONS)


CASES = [(path, method, GenerationMode.POSITIVE) for path, method in OPERATIONS] + [
    (path, "POST", GenerationMode.NEGATIVE)
    for path in ("/predict", "/predict/batch")  # GETs take no input
]


@pytest.mark.parametrize("path,method,mode", CASES)
def test_every_operation_answers_as_its_schema_says(api_schema, path, method, mode):
    # @given inside the test: the schema comes from a fixture (the app needs a model)
    @given(case=api_schema[path][method].as_strategy(mode))
    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case):
        response = case.call_and_validate()  # no 5xx, a declared status, body, content type and headers
        assert response.status_code < 500

    check()


def _validate(api_schema, path, method, response):
    api_schema[path][method].validate_response(response)  # RAISES on a mismatch


BAD_BODIES = [
    ("application/json", b'{"text": "unterminated'),
    ("application/json", b"\xff\xfe not utf-8"),
    ("application/json", b""),
    ("application/json", b"[]"),
    ("application/json", b"null"),
    ("application/json", b'{"text": "a", "text": 5}'),
    ("application/json", json.dumps({"text": "a" * 5, "sentences": 1}).encode()),
    ("application/json", b'{"texts": [[["deep"]]]}'),
    ("application/json", b"[" * 10_000 + b"]" * 10_000),
    ("text/plain", b"i feel glad"),
    ("application/x-www-form-urlencoded", b"text=i+feel+glad"),
]


@pytest.mark.parametrize("path", ["/predict", "/predict/batch"])
@pytest.mark.parametrize("content_type,body", BAD_BODIES)
def test_bodies_no_schema_generates_get_a_declared_4xx(client, api_schema, path, content_type, body):
    response = client.post(path, content=body, headers={"Content-Type": content_type})
    assert 400 <= response.status_code < 500
    _validate(api_schema, path, "POST", response)


def test_the_schema_states_the_limits(api_schema):
    models = api_schema.raw_schema["components"]["schemas"]
    assert models["PredictRequest"]["properties"]["text"]["maxLength"] == MAX_CHARS
    assert models["BatchRequest"]["properties"]["texts"]["maxItems"] == MAX_BATCH


def test_an_oversize_body_is_413_before_it_is_read(client, api_schema):
    limit = client.get("/health").json()["limits"]["max_body_bytes"]
    body = b'{"text": "' + b"a" * limit + b'"}'
    response = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    _validate(api_schema, "/predict", "POST", response)


def test_500_and_503_answers_match_the_schema(app, client, api_schema, monkeypatch):
    batcher = app.state.batcher

    def explode(texts, sentences):
        raise RuntimeError("model exploded")

    monkeypatch.setattr(batcher, "_run_model", explode)
    response = client.post("/predict", json={"text": "i feel glad"})
    assert response.status_code == 500 and response.headers["content-type"] == "application/json"
    _validate(api_schema, "/predict", "POST", response)
    monkeypatch.setattr(batcher, "queued", batcher.max_queue)  # a full queue
    response = client.post("/predict/batch", json={"texts": ["i feel glad"]})
    assert response.status_code == 503 and int(response.headers["Retry-After"]) >= 1
    _validate(api_schema, "/predict/batch", "POST", response)
