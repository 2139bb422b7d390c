"""The interaction log's privacy options: redaction before writing, and retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from ragsvc.interactions.log import Interaction, InteractionLog, redact, tail


def test_redaction_finds_addresses_cards_and_phones_and_leaves_the_rest() -> None:
    text = (
        "Mail jane.doe+x@example.co.uk or call +1 (415) 555-0134 or 020 7946 0958; card "
        "4111 1111 1111 1111; order 1234567890123 of 2024-01-05, room 12345, 3.14159."
    )
    assert redact(text) == (
        "Mail [email] or call [phone] or [phone]; card [card]; order 1234567890123 of "
        "2024-01-05, room 12345, 3.14159."
    )
    assert redact("4111 1111 1111 1112") == "4111 1111 1111 1112"  # fails the Luhn check


@pytest.mark.parametrize("sink", ["sqlite", "jsonl"])
def test_logged_questions_are_redacted_and_old_records_pruned(tmp_path: Path, sink: str) -> None:
    old = (datetime.now(UTC) - timedelta(days=40)).isoformat()

    async def scenario() -> None:
        log = await InteractionLog.open(tmp_path, sink, redact=True)  # type: ignore[arg-type]
        await log.record(Interaction(request_id="old", at=old, question="an old question"))
        await log.record(
            Interaction(request_id="new", question="Is bob@example.org on +44 20 7946 0958?")
        )
        await log.close()
        log = await InteractionLog.open(tmp_path, sink, retention_days=30)  # type: ignore[arg-type]
        await log.close()

    anyio.run(scenario)
    records = tail(tmp_path, sink, 10)  # type: ignore[arg-type]
    assert [r.request_id for r in records] == ["new"]
    assert records[0].question == "Is [email] on [phone]?"
