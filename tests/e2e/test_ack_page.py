"""The acknowledge/dispose page in a real headless Chromium (Debian's /usr/bin/chromium driven
by /usr/bin/chromedriver through Selenium), served by uvicorn on 127.0.0.1 over the real
service and SQLite store: open the link from an SMS, acknowledge, then dispose, and check the
store and the journal changed as a duty officer would later see them."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from alerts.api import ApiServer
from alerts.lifecycle import Phase
from alerts.model import Disposition
from tests.integration.test_api_fixtures import MIN, T0, alarm_event, build_world

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

pytestmark = pytest.mark.e2e


@pytest.fixture
def served():
    """(world, base_url): the API app under uvicorn in a thread, on a free loopback port."""
    d = Path(tempfile.mkdtemp(prefix="hw-e2e-ack-"))
    world = build_world(d / "alerts.sqlite")
    with ApiServer(world.app()) as server:
        yield world, server.url
    world.store.close()
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def browser(tmp_path):
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.fail(
            f"headless Chromium is needed for this test and {', '.join(missing)} is missing; "
            "install it with `apt-get install -y chromium chromium-driver`",
            pytrace=False,
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--lang=zh-CN",
    ):
        opts.add_argument(flag)
    # A phone: desktop windows cannot be narrower than about 500 px, an emulated device can.
    opts.add_experimental_option(
        "mobileEmulation", {"deviceMetrics": {"width": 390, "height": 844, "pixelRatio": 3}}
    )
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=opts)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _wait(driver, condition, what: str, timeout: float = 20.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition, message=what)


def _text(driver, element_id: str) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, element_id).text


def test_acknowledge_then_dispose_from_the_sms_link(served, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    world, base = served
    link = base + world.link("a-e001-2")

    browser.get(link)
    _wait(browser, lambda d: _text(d, "title") == "AT-2 氨气二级报警", "alarm title shown")
    assert _text(browser, "colour") == "橙"
    assert _text(browser, "phase") == "报警中，未确认"
    assert _text(browser, "enterprise") == "E001 化工有限公司"
    assert "35" in _text(browser, "value") and "限值 30" in _text(browser, "value")
    # Fits a phone screen: nothing wider than the 390 px viewport.
    width, scroll = browser.execute_script(
        "return [window.innerWidth, document.documentElement.scrollWidth]"
    )
    assert width == 390 and scroll <= width

    # Acknowledge without a name is refused on the page, with a reason.
    browser.find_element(By.ID, "ack-btn").click()
    assert _text(browser, "message") == "请填写您的姓名"
    assert world.store.get_alarm("a-e001-2").phase is Phase.FIRING

    browser.find_element(By.ID, "person").send_keys("赵六")
    browser.find_element(By.ID, "ack-btn").click()
    _wait(browser, lambda d: "已确认" in _text(d, "message"), "acknowledge confirmed")
    rec = world.store.get_alarm("a-e001-2")
    assert rec.phase is Phase.ACKNOWLEDGED and rec.acked_by == "赵六 (via link)"
    assert _text(browser, "acked-by") == "赵六 (via link)"
    assert not browser.find_element(By.ID, "ack-btn").is_enabled()

    # The gas reading falls back to normal (消警); the page, reopened, offers the disposition.
    world.now[0] += 10 * MIN
    world.service.on_alarm(
        alarm_event(
            "a-e001-2", "E001", "AT-2", level="L2", state="cleared", ts=T0 + 14 * MIN, value=3.0
        ),
        T0 + 14 * MIN,
    )
    browser.get(link)
    _wait(browser, lambda d: _text(d, "phase") == "已消警，待处置", "cleared phase shown")
    assert browser.find_element(By.ID, "person").get_attribute("value") == "赵六"  # remembered
    Select(browser.find_element(By.ID, "code")).select_by_value("real_alarm_handled")
    browser.find_element(By.ID, "note").send_keys("关闭进料阀，现场通风后复测正常")
    browser.find_element(By.ID, "dispose-btn").click()
    _wait(browser, lambda d: "处置已提交" in _text(d, "message"), "disposition confirmed")

    rec = world.store.get_alarm("a-e001-2")
    assert rec.phase is Phase.CLOSED
    assert rec.disposition is Disposition.REAL_ALARM_HANDLED
    assert rec.disposition_note == "关闭进料阀，现场通风后复测正常"
    assert rec.closed_by == "赵六 (via link)"
    assert _text(browser, "disposition") == "真实报警，已处置（赵六 (via link)）"
    assert not browser.find_element(By.ID, "actions").is_displayed()
    kinds = [(e.kind, e.actor) for e in world.service.journal.entries(subject_id="a-e001-2")]
    assert ("action.acknowledge", "赵六 (via link)") in kinds
    assert ("action.dispose", "赵六 (via link)") in kinds
    assert world.service.journal.verify().ok


def test_an_expired_link_says_so_and_offers_no_buttons(served, browser):
    from selenium.webdriver.common.by import By

    world, base = served
    expired = world.links.sign("a-e001-1", world.clock() - 1000)
    browser.get(f"{base}/a/a-e001-1?t={expired}")
    _wait(browser, lambda d: _text(d, "title") == "无法打开", "error shown")
    assert "链接无效或已过期" in _text(browser, "message")
    assert not browser.find_element(By.ID, "actions").is_displayed()
    assert world.store.get_alarm("a-e001-1").phase is Phase.FIRING
