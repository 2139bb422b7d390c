"""The README's front door: its curl walkthrough runs as printed against a real server."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.support.data import ROOT, dataset
from tests.support.processes import Server

README = ROOT / "README.md"


def _curl_example() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- curl-example.*?-->\n```sh\n(.*?)```", text, re.S)
    assert match, "README has no curl example block"
    return match.group(1)


def test_the_example_covers_upload_poll_query_delete() -> None:
    script = _curl_example()
    for needle in ("-F files=@", "/jobs/$JOB", "/query", "-X DELETE"):
        assert needle in script


@pytest.mark.slow
def test_curl_example_works_as_printed(tmp_path: Path) -> None:
    dataset("pdf_samples")
    server = Server(tmp_path / "data", tmp_path / "server.log").start()
    try:
        # The only change: the port of this test's server instead of the default 8000.
        script = _curl_example().replace("127.0.0.1:8000", f"127.0.0.1:{server.port}")
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
    finally:
        server.stop()
    assert result.returncode == 0, result.stderr
    assert '"state":"ready"' in result.stdout
    assert '"answerable":true' in result.stdout and "85%" in result.stdout
