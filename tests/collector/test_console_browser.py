"""The console in a real browser: Debian's chromium, headless, driven by selenium.

One collector on SQLite holds a month of history and today's records from
the project's real probes. The browser logs in through the form and opens
every page; on each it finds what a person looks for, no JavaScript error
in the console, no failed request in the network log, and it leaves a
screenshot under tests/screenshots/ (git-ignored).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from access_tokens import make_token
from collector_proc import CollectorProcess
from console_seed import (
    BUILDS,
    PROBE_RECORDS,
    events_from_each_protocol,
    records_from_probes,
    write_history,
)

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (test extra) is missing")
from selenium.common.exceptions import WebDriverException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.wait import WebDriverWait  # noqa: E402

SCREENSHOTS = Path(__file__).resolve().parents[1] / "screenshots"
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def seeded(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[CollectorProcess, str, dict[str, str]]]:
    workdir = tmp_path_factory.mktemp("console")
    db_url = f"sqlite:///{workdir / 'console.db'}"
    assert write_history(db_url) > 1000
    reader = make_token(db_url, "morning-reader", ["read"])
    proc = CollectorProcess(db_url, str(workdir)).wait_ready()
    try:
        assert records_from_probes(proc, workdir / "telemd") >= PROBE_RECORDS
        yield proc, reader, events_from_each_protocol(proc)
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("needs Debian's chromium and chromium-driver (make system-deps installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--window-size=1280,1400", "--no-first-run", "--disable-extensions",
    ):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def problems_in_logs(driver: Any) -> list[str]:
    """JavaScript console errors and failed requests since the last call."""
    found = [
        f"console: {entry['message']}"
        for entry in driver.get_log("browser")
        if entry["level"] == "SEVERE"
    ]
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.loadingFailed" and not params.get("canceled"):
            found.append(f"failed: {params.get('errorText')} ({params.get('type')})")
        elif message["method"] == "Network.responseReceived":
            response = params["response"]
            if response["status"] >= 400:
                found.append(f"{response['status']} {response['url']}")
    return found


def click_and_wait(driver: Any, css: str) -> None:
    """Click, then wait for the page it leads to: a click does not wait for the load."""
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.CSS_SELECTOR, css).click()
    WebDriverWait(driver, 10).until(lambda _: _left(old))
    WebDriverWait(driver, 10).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )


def _left(old: Any) -> bool:
    """Whether the page holding `old` is gone. chromedriver may answer a
    question about an element of a page being torn down with an inspector
    error rather than a stale-element one: that page is leaving too."""
    try:
        old.is_enabled()
    except WebDriverException:  # StaleElementReferenceException included
        return True
    return False


def visit(driver: Any, base: str, path: str, name: str) -> str:
    driver.get(base + path)
    body = driver.find_element(By.TAG_NAME, "body").text
    assert len(body.strip()) > 40, f"{path} is blank: {body!r}"
    assert driver.find_element(By.TAG_NAME, "h1").text.strip(), f"{path} has no heading"
    SCREENSHOTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(SCREENSHOTS / f"{name}.png"))
    problems = problems_in_logs(driver)
    assert problems == [], f"{path}: {problems}"
    assert "Internal Server Error" not in body
    return str(body)


def test_every_page_in_a_real_browser(
    browser: Any, seeded: tuple[CollectorProcess, str, dict[str, str]]
) -> None:
    proc, reader, apps = seeded
    base = proc.base_url
    driver = browser
    driver.get(base + "/")  # a browser at / is sent to the console, and from there to log in
    assert driver.current_url == base + "/console/login"
    visit(driver, base, "/console/login", "login")
    driver.find_element(By.ID, "token").send_keys("telemd_" + "x" * 43)
    click_and_wait(driver, "form.login button")
    assert "cannot read" in driver.find_element(By.ID, "error").text
    # The refused login's 401 was meant; seeing it shows the network log is read.
    assert [p for p in problems_in_logs(driver) if p.startswith("401 ")]
    driver.find_element(By.ID, "token").send_keys(reader)
    click_and_wait(driver, "form.login button")
    assert driver.current_url == base + "/console/"

    overview = visit(driver, base, "/console/", "overview")
    assert "Records per day by kind" in overview
    assert len(driver.find_elements(By.CSS_SELECTOR, "#records-per-day svg rect")) >= 30
    assert driver.find_elements(By.CSS_SELECTOR, "#machines-per-day svg polyline")
    top = driver.find_elements(By.CSS_SELECTOR, "#top-problems tbody tr")
    assert len(top) >= 4
    titles = [row.find_element(By.CSS_SELECTOR, "td.title").text for row in top]
    assert any("ValueError" in title for title in titles), titles  # today's Python probe
    assert driver.find_elements(By.CSS_SELECTOR, "#new-problems tbody tr")

    problems = visit(driver, base, "/console/problems?days=30", "problems")
    rows = driver.find_elements(By.CSS_SELECTOR, "table.problems tbody tr")
    assert len(rows) >= 5
    assert len(driver.find_elements(By.CSS_SELECTOR, "table.problems svg.spark")) == len(rows)
    counts = [int(r.find_elements(By.CSS_SELECTOR, "td.n")[0].text) for r in rows]
    assert counts == sorted(counts, reverse=True) and counts[0] > 50
    top_title = rows[0].find_element(By.CSS_SELECTOR, "td.title").text
    assert top_title in problems
    visit(driver, base, "/console/problems?kind=kernel&sort=machines", "problems-kernel")
    kinds = {
        td.text for td in driver.find_elements(By.CSS_SELECTOR, "table.problems td:nth-child(2)")
    }
    assert kinds == {"kernel"}

    driver.get(base + "/console/problems?days=30")
    click_and_wait(driver, "table.problems tbody tr td.title a")
    problem_path = driver.current_url.removeprefix(base)
    problem = visit(driver, base, problem_path, "problem")
    assert driver.find_element(By.TAG_NAME, "h1").text == top_title
    assert int(driver.find_element(By.ID, "occurrences").text) == counts[0]
    assert driver.find_element(By.ID, "backtrace").text.strip()
    assert len(driver.find_elements(By.CSS_SELECTOR, "#problem-per-day svg rect")) >= 20
    assert driver.find_elements(By.CSS_SELECTOR, "#problem-builds svg rect")
    assert "Machines" in problem and driver.find_elements(By.CSS_SELECTOR, "table.records tr")

    builds = visit(driver, base, "/console/builds", "builds")
    for build in BUILDS:
        assert build in builds
    assert len(driver.find_elements(By.CSS_SELECTOR, "#crashes-per-build svg rect")) >= 3
    assert driver.find_elements(By.CSS_SELECTOR, "#machines-per-build svg rect")

    search = "/console/records?classification=org.clearlinux/python/exception"
    records = visit(driver, base, search, "records")
    assert "org.clearlinux/python/exception" in records
    export = driver.find_element(By.LINK_TEXT, "CSV").get_attribute("href")
    assert "classification=org.clearlinux%2Fpython%2Fexception" in export

    visit(driver, base, "/console/records", "records-all")
    click_and_wait(driver, "a[rel=next]")
    assert "before=" in driver.current_url
    assert problems_in_logs(driver) == []

    driver.get(base + search)
    click_and_wait(driver, "table.records tbody tr td a")
    record_id = driver.current_url.rsplit("/", 1)[1]
    record = visit(driver, base, f"/console/records/{record_id}", "record")
    headers = driver.find_elements(By.CSS_SELECTOR, "table.headers th")
    assert len(headers) == 17  # record_id, received_at and the 15 record headers
    assert "ValueError: bad value in settings.ini" in record

    machine_id = driver.find_element(By.CSS_SELECTOR, "table.headers a").text
    click_and_wait(driver, "table.headers a")
    machine = visit(driver, base, f"/console/machines/{machine_id}", "machine")
    assert machine_id in machine and "org.clearlinux/python/exception" in machine
    assert "ValueError" in driver.find_element(By.CSS_SELECTOR, "table.problems").text

    visit(driver, base, "/console/apps", "apps")
    rows = {
        row.find_element(By.CSS_SELECTOR, "td").text: row
        for row in driver.find_elements(By.CSS_SELECTOR, "table.apps tbody tr")
    }
    assert set(apps.values()) <= set(rows), rows.keys()
    failures = {
        name: int(rows[name].find_elements(By.CSS_SELECTOR, "td.n")[1].text) for name in rows
    }
    assert failures[apps["vrooli"]] == 1 and failures[apps["shuttle"]] == 0
    assert driver.find_elements(By.CSS_SELECTOR, "#events-per-app svg rect")
    recent = driver.find_element(By.CSS_SELECTOR, "table.events").text
    assert "dependency_unreachable" in recent and "payment_failed" in recent
    tail = visit(driver, base, f"/console/apps/tail?app={apps['app']}", "tail")
    assert "invoice_sent" in tail and "dependency_unreachable" not in tail
    refresh = driver.find_element(By.CSS_SELECTOR, "meta[http-equiv=refresh]")
    assert int(refresh.get_attribute("content")) > 0

    driver.get(base + "/console/builds")  # a page that does not reload itself
    click_and_wait(driver, "form.logout button")
    assert driver.current_url == base + "/console/login"
    driver.get(base + "/console/")
    assert driver.current_url == base + "/console/login"
    assert re.search(r"Log in", driver.find_element(By.TAG_NAME, "h1").text)


def test_a_phone_sized_window_needs_no_sideways_scrolling(
    browser: Any, seeded: tuple[CollectorProcess, str, dict[str, str]]
) -> None:
    proc, reader, _ = seeded
    driver = browser
    driver.set_window_size(390, 844)
    try:
        driver.get(proc.base_url + "/console/login")
        driver.find_element(By.ID, "token").send_keys(reader)
        click_and_wait(driver, "form.login button")
        phone_pages = (
            ("/console/", "phone-overview"),
            ("/console/problems", "phone-problems"),
            ("/console/records", "phone-records"),
            ("/console/apps", "phone-apps"),
        )
        for path, name in phone_pages:
            visit(driver, proc.base_url, path, name)
            overflow = driver.execute_script(
                "return document.documentElement.scrollWidth - window.innerWidth"
            )
            assert overflow <= 0, f"{path} is {overflow}px wider than the phone"
    finally:
        driver.set_window_size(1280, 1400)
