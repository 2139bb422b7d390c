"""Learning from use, through the real server: feedback on answers, the interaction listing,
and the fine-tuning and evaluation exports built from them; `export validate` on a file with
one defect of each kind."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from ragsvc.interactions.finetune import normalised_question
from tests.support.processes import Server, run_ragsvc, wait_jobs

NOTES = {
    "lighthouse.txt": "The lighthouse on Skerry Rock flashes white every five seconds.",
    "ferry.txt": "The ferry to Inishmore leaves the harbour at nine in the morning.",
    "museum.txt": "The maritime museum is on Harbour Street, beside the old customs house.",
    "crane.txt": "The harbour crane lifts forty containers an hour in calm weather.",
}
SECRET = "The vault code of team B is 4471."


def _key(data: str, *args: str) -> str:
    created = run_ragsvc("--data-dir", data, "keys", "create", *args)
    assert created.returncode == 0, created.stderr
    return created.stdout.split()[-1]


@pytest.mark.slow
def test_feedback_listing_and_exports_through_the_real_server(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    admin = {"Authorization": f"Bearer {_key(data, '--name', 'ops', '--scope', 'admin')}"}
    team_a = {"Authorization": "Bearer " + _key(data, "--name", "a", "--scope", "write",
                                                 "--collection", "a")}  # fmt: skip
    team_b = {"Authorization": "Bearer " + _key(data, "--name", "b", "--scope", "write",
                                                 "--collection", "b")}  # fmt: skip
    server = Server(Path(data), tmp_path / "server.log").start()
    try:
        with httpx.Client(base_url=server.url, timeout=120, headers=admin) as client:
            files = [("files", (name, text.encode(), "text/plain")) for name, text in NOTES.items()]
            uploaded = client.post(
                "/documents", files=files, data={"collection": "a"}, headers=team_a
            )
            secret = client.post(
                "/documents",
                files=[("files", ("vault.txt", SECRET.encode(), "text/plain"))],
                data={"collection": "b"},
                headers=team_b,
            )
            jobs = [j["id"] for j in uploaded.json()["jobs"] + secret.json()["jobs"]]
            assert all(j["state"] == "ready" for j in wait_jobs(client, jobs))

            def ask(question: str, headers: dict[str, str] = team_a) -> str:
                answer = client.post("/query", json={"question": question, "k": 3}, headers=headers)
                assert answer.status_code == 200, answer.text
                return str(answer.json()["request_id"])

            def rate(
                request_id: str, headers: dict[str, str] = team_a, **body: str
            ) -> httpx.Response:
                return client.post(
                    "/feedback", json={"request_id": request_id, **body}, headers=headers
                )

            flash = ask("How often does the Skerry Rock lighthouse flash?")
            ferry = ask("When does the ferry to Inishmore leave? Write to jane.doe@example.com")
            flash_again = ask("How often does the Skerry Rock lighthouse flash?")
            museum = ask("Where is the maritime museum?")
            crane = ask("How many containers does the crane lift?")
            ask("Is the lighthouse painted red?")  # asked, never rated
            vault = ask("What is the vault code?", team_b)

            assert rate(flash, rating="up").status_code == 200
            assert rate(ferry, rating="up", comment="quick and right").status_code == 200
            assert rate(flash_again, rating="up").status_code == 200
            correction = "The maritime museum is on Harbour Street, next to the customs house."
            corrected = rate(museum, rating="down", correction=correction)
            assert corrected.status_code == 200 and corrected.json()["correction"] == correction
            assert rate(crane, rating="down").status_code == 200  # no correction: not exported
            assert rate(vault, team_b, rating="up").status_code == 200

            # Another tenant's answer, an unknown one, and bad bodies.
            for response in (rate(vault, rating="down"), rate("no-such-request", rating="up")):
                assert response.status_code == 404, response.text
                assert "no answer with request_id" in response.json()["detail"]
            assert rate(flash, rating="sideways").status_code == 400
            assert (
                client.post("/feedback", json={"rating": "up"}, headers=team_a).status_code == 400
            )
            assert rate(flash, rating="up", extra="x").status_code == 400

            # The listing: admin keys only, filtered by rating; a team's key cannot read it.
            assert client.get("/interactions", headers=team_a).status_code == 403
            up = client.get("/interactions", params={"rating": "up"}, headers=admin).json()
            assert {i["request_id"] for i in up["interactions"]} == {
                flash,
                ferry,
                flash_again,
                vault,
            }
            down = client.get("/interactions", params={"rating": "down"}, headers=admin).json()
            by_id = {i["request_id"]: i for i in down["interactions"]}
            assert set(by_id) == {museum, crane}
            assert by_id[museum]["feedback"]["correction"] == correction
            unrated = client.get("/interactions", params={"rating": "none"}, headers=admin).json()
            assert [i["question"] for i in unrated["interactions"]] == [
                "Is the lighthouse painted red?"
            ]
            paged = client.get("/interactions", params={"limit": 2}, headers=admin).json()
            assert len(paged["interactions"]) == 2 and paged["next_offset"] == 2
            later = client.get(
                "/interactions", params={"since": "2999-01-01"}, headers=admin
            ).json()
            assert later["interactions"] == []
            bad = client.get("/interactions", params={"since": "last week"}, headers=admin)
            assert bad.status_code == 400 and "ISO 8601" in bad.json()["detail"]
    finally:
        server.stop()

    out = tmp_path / "finetune"
    exported = run_ragsvc("--data-dir", data, "export", "finetune", "--out", str(out))
    assert exported.returncode == 0, exported.stderr
    records = {}
    for split in ("train", "validation", "test"):
        for line in (out / f"{split}.jsonl").read_text().splitlines():
            record = json.loads(line)
            roles = [m["role"] for m in record["messages"]]
            assert roles == ["system", "user", "assistant"]
            question = record["messages"][1]["content"]
            assert normalised_question(question) not in records, "a question in two places"
            records[normalised_question(question)] = (split, record)
    questions = {record["messages"][1]["content"] for _, record in records.values()}
    # Exactly the up-rated and the corrected answers, the repeated question once, the
    # address redacted, the down-rated answer without a correction left out.
    assert questions == {
        "How often does the Skerry Rock lighthouse flash?",
        "When does the ferry to Inishmore leave? Write to [email]",
        "Where is the maritime museum?",
        "What is the vault code?",
    }
    everything = "".join((out / f"{s}.jsonl").read_text() for s in ("train", "validation", "test"))
    assert "jane.doe" not in everything
    _, museum_record = records[normalised_question("Where is the maritime museum?")]
    assert museum_record["messages"][2]["content"] == correction
    assert "Harbour Street" in museum_record["messages"][0]["content"]  # the passages
    report = json.loads((out / "report.json").read_text())
    assert report["dropped_by_reason"] == {"duplicate": 1}
    assert sum(report["written"].values()) == 4
    check = run_ragsvc("export", "validate", str(out / "train.jsonl"))
    assert check.returncode == 0 and "0 defect(s)" in check.stdout

    beir = tmp_path / "feedback-set"
    made = run_ragsvc("--data-dir", data, "export", "eval", "--out", str(beir))
    assert made.returncode == 0, made.stderr
    queries = [json.loads(line) for line in (beir / "queries.jsonl").read_text().splitlines()]
    assert len(queries) == 3  # the questions rated up, each once
    evaluated = run_ragsvc(
        "eval", "retrieval", "--beir", str(beir), "--eval-dir", str(tmp_path / "eval"),
        "--output", str(tmp_path / "eval.json"), timeout=600,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["queries"] == 3 and result["modes"]["hybrid"]["recall@10"] == 1.0


@pytest.mark.slow
def test_validate_reports_each_defect_with_its_line(tmp_path: Path) -> None:
    good = {
        "messages": [
            {"role": "system", "content": "Answer from the passages."},
            {"role": "user", "content": "When does the ferry leave?"},
            {"role": "assistant", "content": "At nine."},
        ]
    }
    bad_role = {"messages": [{"role": "bot", "content": "hi"}, good["messages"][2]]}
    empty = {"messages": [good["messages"][1], {"role": "assistant", "content": "  "}]}
    unanswered = {"messages": good["messages"][:2]}
    too_long = {"messages": [good["messages"][1], {"role": "assistant", "content": "word " * 50}]}
    lines = [
        json.dumps(good),
        "{not json",
        json.dumps(bad_role),
        json.dumps(empty),
        json.dumps(unanswered),
        json.dumps(too_long),
        json.dumps(good),
    ]
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(lines) + "\n")
    checked = run_ragsvc("export", "validate", str(path), "--max-tokens", "30")
    assert checked.returncode == 1
    reported = checked.stdout.splitlines()
    assert reported[0].startswith("line 2: not JSON")
    assert reported[1] == "line 3: message 1: role 'bot' is not one of system, user, assistant"
    assert reported[2] == "line 4: message 2 (assistant) has empty content"
    assert reported[3] == "line 5: the last message is from the user, not the assistant"
    assert reported[4].startswith("line 6: ") and "over the limit of 30" in reported[4]
    assert reported[5] == f"2 valid record(s), 5 defect(s) in {path}"
    missing = run_ragsvc("export", "validate", str(tmp_path / "absent.jsonl"))
    assert missing.returncode == 2 and "no such file" in missing.stderr
