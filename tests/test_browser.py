"""The web page in a real browser (Debian's headless Chromium, driven through chromedriver):
enter an API key, upload a PDF through the page, wait for its job, ask, see tokens arrive and
a cited page, and save a screenshot (`RAGSVC_SCREENSHOT=path` keeps it; the README's is made
this way)."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from ragsvc.security.keys import KeyStore
from tests.support.data import NAACL, QUESTION, WHOLE_SENTENCE, dataset
from tests.support.processes import Server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None or CHROMEDRIVER is None,
        reason="no chromium/chromedriver here: `make test` installs Debian's chromium and "
        "chromium-driver when it runs as root with apt-get; install them to run this test",
    ),
]


@pytest.fixture
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,1400"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@contextmanager
def _page_with_a_key(tmp_path: Path, browser: Any) -> Iterator[Any]:
    """A server with keys and the page open in the browser: without a key the page says,
    beside the key box, that one is needed (and nothing at the bottom); the key is entered
    once and kept for the tab. Yields the browser's waiter."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    keys = KeyStore.open(tmp_path / "data")
    key = keys.create("browser", "write")
    keys.close()
    server = Server(tmp_path / "data", tmp_path / "server.log").start()
    try:
        browser.get(server.url + "/")
        wait = WebDriverWait(browser, 240)
        key_state = browser.find_element(By.ID, "key-state")
        wait.until(lambda _: "needs an API key" in key_state.text)
        assert browser.find_element(By.ID, "error").text == ""
        browser.find_element(By.ID, "api-key").send_keys(key, Keys.ENTER)
        wait.until(lambda _: key_state.text == "key set for this tab")
        stored = browser.execute_script("return sessionStorage.getItem('ragsvc.api_key')")
        assert stored == key
        yield wait
    finally:
        server.stop()


def test_upload_ask_and_see_a_cited_page(tmp_path: Path, browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as seen

    pdf = dataset(*NAACL)
    with _page_with_a_key(tmp_path, browser) as wait:
        assert browser.find_element(By.CSS_SELECTOR, "label[for=question]").text == "Question"
        browser.find_element(By.ID, "files").send_keys(str(pdf))  # the input behind the drop zone
        job = wait.until(seen.presence_of_element_located((By.CSS_SELECTOR, "#jobs li")))
        wait.until(lambda _: job.get_attribute("data-state") in ("ready", "failed"))
        assert job.get_attribute("data-state") == "ready", job.text
        wait.until(seen.text_to_be_present_in_element((By.ID, "documents"), pdf.name))

        question = browser.find_element(By.ID, "question")
        question.send_keys(QUESTION)
        question.send_keys(Keys.ENTER)  # the keyboard asks, no click needed
        answer = browser.find_element(By.ID, "answer")
        wait.until(lambda _: answer.get_attribute("data-done") == "true")
        assert int(answer.get_attribute("data-tokens") or 0) >= 1  # tokens arrived as events
        assert WHOLE_SENTENCE in answer.text
        assert "Confidence" in browser.find_element(By.ID, "confidence").text
        cited = browser.find_elements(By.CSS_SELECTOR, "#sources li.cited")
        assert cited, browser.find_element(By.ID, "sources").text
        assert pdf.name in cited[0].text and "page" in cited[0].text
        mark = cited[0].find_element(By.TAG_NAME, "mark")
        assert "85%" in mark.text  # the quoted sentence is highlighted in its passage
        assert browser.find_element(By.ID, "error").text == ""

        # Feedback under the answer: a thumbs down, then what it should have said.
        browser.find_element(By.ID, "rate-down").click()
        correction = browser.find_element(By.ID, "correction")
        wait.until(lambda _: correction.is_displayed())
        correction.send_keys("About 85% in F-score, with the HMM-based tagger.")
        browser.find_element(By.ID, "send-correction").click()
        state = browser.find_element(By.ID, "feedback-state")
        wait.until(lambda _: "correction saved" in state.text)
        with sqlite3.connect(tmp_path / "data" / "interactions.sqlite3") as log:
            rating, record = log.execute("SELECT rating, record FROM feedback").fetchone()
        assert rating == "down" and "with the HMM-based tagger" in record

        shot = Path(os.environ.get("RAGSVC_SCREENSHOT") or tmp_path / "page.png")
        shot.parent.mkdir(parents=True, exist_ok=True)
        assert browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        print(f"screenshot: {shot}")

        delete = browser.find_element(By.CSS_SELECTOR, f"button[aria-label='Delete {pdf.name}']")
        delete.click()
        wait.until(lambda _: pdf.name not in browser.find_element(By.ID, "documents").text)


def test_choosing_files_uploads_each_once_and_a_stored_one_says_so(
    tmp_path: Path, browser: Any
) -> None:
    from selenium.webdriver.common.by import By

    notes = []
    for name, words in (
        ("tides.txt", "The tide tables are printed weekly."),
        ("ferry.txt", "The ferry leaves the harbour at nine."),
        ("storm.txt", "Storm warnings are raised with a red flag."),
    ):
        path = tmp_path / name
        path.write_text(words)
        notes.append(path)
    with _page_with_a_key(tmp_path, browser) as wait:

        def rows() -> list[Any]:
            return list(browser.find_elements(By.CSS_SELECTOR, "#jobs li"))

        def settled(count: int) -> bool:
            found = rows()
            return len(found) == count and all(
                row.get_attribute("data-state") in ("ready", "failed") for row in found
            )

        browser.find_element(By.ID, "files").send_keys("\n".join(str(p) for p in notes))
        wait.until(lambda _: settled(3))
        assert not browser.find_elements(By.CSS_SELECTOR, "#upload-form button")  # no 2nd action
        assert all(row.get_attribute("data-state") == "ready" for row in rows())
        for note in notes:
            wait.until(lambda _, n=note: n.name in browser.find_element(By.ID, "documents").text)

        browser.find_element(By.ID, "files").send_keys(str(notes[1]))
        wait.until(lambda _: settled(4))
        again = rows()[0]  # the newest job is listed first
        assert "ferry.txt" in again.text and "already stored, unchanged" in again.text
        assert "chunks" not in again.text
        assert browser.find_element(By.ID, "error").text == ""
        icons = browser.find_elements(By.CSS_SELECTOR, "link[rel=icon]")
        assert icons and icons[0].get_attribute("href").startswith("data:")  # no /favicon.ico


def test_a_follow_up_is_asked_in_a_thread(tmp_path: Path, browser: Any) -> None:
    """The page keeps the conversation: "When was it signed?" after a question on the War of
    1812 finds the treaty and says what it searched; "New conversation" forgets it, and the
    same words then find the lease."""
    import httpx
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    notes = {
        "ghent.txt": b"The Treaty of Ghent ended the War of 1812 between Britain and the United "
        b"States. The treaty was signed on 24 December 1814 in the city of Ghent.",
        "lease.txt": b"The lease of the harbour warehouse was signed in March 2020 for ten "
        b"years. When the lease was signed, the rent was fixed at 900 pounds a month.",
    }
    with _page_with_a_key(tmp_path, browser) as wait:
        key = browser.execute_script("return sessionStorage.getItem('ragsvc.api_key')")
        url = browser.current_url.rstrip("/")
        with httpx.Client(base_url=url, headers={"X-API-Key": key}, timeout=120) as client:
            uploaded = client.post(
                "/documents?wait=true", files=[("files", item) for item in notes.items()]
            )
            assert uploaded.status_code == 200, uploaded.text
        answer = browser.find_element(By.ID, "answer")
        question = browser.find_element(By.ID, "question")

        def ask(text: str) -> list[str]:
            question.clear()
            question.send_keys(text, Keys.ENTER)
            wait.until(lambda _: answer.get_attribute("data-done") == "true")
            return [s.text for s in browser.find_elements(By.CSS_SELECTOR, "#sources li")]

        first = ask("What ended the War of 1812?")
        assert "ghent.txt" in first[0]
        follow_up = ask("When was it signed?")
        assert "ghent.txt" in follow_up[0] and "1814" in answer.text
        assert "War of 1812" in browser.find_element(By.ID, "searched").text
        assert len(browser.find_elements(By.CSS_SELECTOR, "#thread li")) == 2
        browser.find_element(By.ID, "new-conversation").click()
        assert browser.find_elements(By.CSS_SELECTOR, "#thread li") == []
        alone = ask("When was it signed?")
        assert "lease.txt" in alone[0] and browser.find_element(By.ID, "searched").text == ""
        assert browser.find_element(By.ID, "error").text == ""
