"""Schemathesis against the running server's own OpenAPI document, with a key: generated
requests on every operation, including hostile values the schema allows or forbids; none may
get a 5xx, and every response must match what the document promises for its status. The
suite runs a bounded number; the README's development section gives the command for the full
run (2,000 requests and more)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ragsvc.security.keys import KeyStore
from tests.support.processes import Server

EXAMPLES_PER_OPERATION = int(os.environ.get("RAGSVC_FUZZ_EXAMPLES", "15"))


@pytest.mark.slow
def test_generated_requests_never_get_a_server_error_and_match_the_document(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    keys = KeyStore.open(data)
    key = keys.create("fuzz", "admin", rate_limit=0)
    keys.close()
    server = Server(data, tmp_path / "server.log").start()
    headers = {"Authorization": f"Bearer {key}"}
    try:
        with httpx.Client(base_url=server.url, headers=headers, timeout=60) as client:
            note = b"The harbour master logs every ship that enters the bay after dark."
            upload = client.post("/documents?wait=true", files=[("files", ("log.txt", note))])
            assert upload.status_code == 200
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "schemathesis.cli",
                "run",
                f"{server.url}/schema/openapi.json",
                "--header",
                f"Authorization: Bearer {key}",
                "--checks",
                "not_a_server_error,response_schema_conformance",
                "--max-examples",
                str(EXAMPLES_PER_OPERATION),
                "--phases",
                "examples,coverage,fuzzing",
                "--seed",
                "7",
                "--generation-database",
                "none",
                "--request-timeout",
                "60",
            ],
            capture_output=True,
            text=True,
            timeout=1200,
            cwd=tmp_path,
        )
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    finally:
        server.stop()
    log = (tmp_path / "server.log").read_text()
    assert "unhandled error" not in log, log[-4000:]
