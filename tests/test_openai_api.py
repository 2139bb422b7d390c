"""The OpenAI-compatible front door, driven by the official `openai` package against the real
server with an API key as its Bearer token: answers with sources, streamed and not."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import openai
import pytest

from ragsvc.security.keys import KeyStore
from tests.support.data import NAACL, QUESTION, WHOLE_SENTENCE, dataset
from tests.support.processes import Server, wait_jobs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, str]]:
    folder = tmp_path_factory.mktemp("openai")
    keys = KeyStore.open(folder / "data")
    key = keys.create("chat-ui", "write")
    keys.close()
    server = Server(folder / "data", folder / "server.log").start()
    pdf = dataset(*NAACL)
    try:
        with httpx.Client(
            base_url=server.url, timeout=300, headers={"Authorization": f"Bearer {key}"}
        ) as client:
            response = client.post(
                "/documents",
                files=[("files", (pdf.name, pdf.read_bytes()))],
                data={"collection": "papers"},
            )
            assert response.status_code == 202, response.text
            assert wait_jobs(client, [response.json()["jobs"][0]["id"]])[0]["state"] == "ready"
            client.post("/documents?wait=true", files=[("files", ("other.txt", b"Bees dance."))])
        yield server, key
    finally:
        server.stop()


def _client(served: tuple[Server, str], key: str | None = None) -> openai.OpenAI:
    server, own = served
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=key or own, max_retries=0)


def test_models_are_ragsvc_and_one_per_collection(served: tuple[Server, str]) -> None:
    ids = [model.id for model in _client(served).models.list()]
    assert ids == ["ragsvc", "ragsvc/default", "ragsvc/papers"]


def test_an_answer_with_its_sources(served: tuple[Server, str]) -> None:
    completion = _client(served).chat.completions.create(
        model="ragsvc/papers",
        messages=[
            {"role": "system", "content": "You are helpful."},
            {"role": "user", "content": "Hello?"},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": QUESTION},
        ],
    )
    assert completion.object == "chat.completion"
    message = completion.choices[0].message
    assert message.role == "assistant" and WHOLE_SENTENCE in (message.content or "")
    assert completion.choices[0].finish_reason == "stop"
    extra: dict[str, Any] = completion.model_extra or {}
    cited = [s for s in extra["sources"] if s["cited"]]
    assert cited and cited[0]["source_name"] == "naacl06-shinyama.pdf"
    assert cited[0]["page_start"] <= 5 <= cited[0]["page_end"]
    assert extra["ragsvc"]["answerable"] is True and extra["ragsvc"]["confidence"] > 0.5


def test_a_streamed_answer_with_its_sources(served: tuple[Server, str]) -> None:
    stream = _client(served).chat.completions.create(
        model="ragsvc", messages=[{"role": "user", "content": QUESTION}], stream=True
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert WHOLE_SENTENCE in text
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    extra: dict[str, Any] = last.model_extra or {}
    assert any(s["cited"] and s["source_name"] == "naacl06-shinyama.pdf" for s in extra["sources"])


def test_a_wrong_key_is_401_and_an_unknown_model_404(served: tuple[Server, str]) -> None:
    with pytest.raises(openai.AuthenticationError):
        _client(served, key="rsk_nope_nope").models.list()
    with pytest.raises(openai.NotFoundError) as raised:
        _client(served).chat.completions.create(
            model="ragsvc/nowhere", messages=[{"role": "user", "content": QUESTION}]
        )
    assert "does not exist" in str(raised.value)


def test_no_user_message_is_a_400_in_openai_shape(served: tuple[Server, str]) -> None:
    server, key = served
    response = httpx.post(
        f"{server.url}/v1/chat/completions",
        json={"model": "ragsvc", "messages": [{"role": "system", "content": "hi"}]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 400
    assert "no user message" in response.json()["error"]["message"]


def test_the_openapi_document_promises_the_error_shape_these_routes_answer_with(
    served: tuple[Server, str],
) -> None:
    server, key = served
    auth = {"Authorization": f"Bearer {key}"}
    document = httpx.get(f"{server.url}/schema/openapi.json", headers=auth).json()
    for body, status in ((None, 400), ({"model": "ragsvc/nothing", "messages": []}, 400)):
        response = httpx.post(f"{server.url}/v1/chat/completions", json=body, headers=auth)
        assert response.status_code == status, response.text
        promised = document["paths"]["/v1/chat/completions"]["post"]["responses"][str(status)]
        schema = promised["content"]["application/json"]["schema"]
        jsonschema.validate(response.json(), {**schema, "components": document["components"]})
    refused = httpx.get(f"{server.url}/v1/models", headers={"Authorization": "Bearer nope"})
    promised = document["paths"]["/v1/models"]["get"]["responses"]["401"]
    schema = promised["content"]["application/json"]["schema"]
    jsonschema.validate(refused.json(), {**schema, "components": document["components"]})
