"""Runnable code cells end to end in Debian's chromium: a live Django server, a real kernel manager process
(`manage.py kernel_manager`, the `kernel_manager` fixture of tests/kernels/conftest.py) and real kernels in sandbox
containers on the real Docker engine.

The lesson is imported from tests/fixtures/courses/code-cells through the real import service, so its markup and
`Lesson.code_cells` are what the importer writes. Waits are Playwright's own (`expect`) or function predicates:
the page's CSP refuses eval, which is how Playwright would poll an expression string. Nothing waits on the clock;
the timeouts are generous ceilings that only a hang reaches. Screenshots go to artifacts/screenshots/code-cells-*.png.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect

from courses.models import Lesson
from courses.services.importing import course_import
from tests.courses import factories

pytestmark = [pytest.mark.browser, pytest.mark.docker, pytest.mark.redis, pytest.mark.django_db(transaction=True)]

COURSE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "courses" / "code-cells"
# The cells of the fixture lesson, in document order.
GREETING, SHOUT, IMAGE, TABLE, TOTAL, SQUARES, LOOP = range(7)
CELL_COUNT = 7
# A kernel starts a container: far longer than Playwright's default allows on a loaded machine.
KERNEL_TIMEOUT_MS = 180_000

# Recorded in the page's own window before any of its scripts run (as tests/browser/test_csp.py does).
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__cspViolations.push(event.effectiveDirective + " " + event.blockedURI + " " + event.sourceFile);
}, true);
"""

# Every text the kernel bar shows, in order: cells.js sets it with textContent, which replaces the text node.
KERNEL_STATES_RECORD = """() => {
  const state = document.querySelector(".kernel-state");
  window.__kernelStates = [state.textContent];
  new MutationObserver((records) => {
    for (const record of records) {
      for (const node of record.addedNodes) window.__kernelStates.push(node.textContent);
    }
  }).observe(state, {childList: true, characterData: true, subtree: true});
}"""

CELL_FINISHED = """(index) => {
  const node = document.getElementById("code-cell-" + index);
  const state = node && node.querySelector(".cell-state");
  return state !== null && !node.hasAttribute("aria-busy") && state.textContent !== "";
}"""


@pytest.fixture
def lesson_path(db) -> str:
    course_import(path=COURSE_DIR)
    lesson = Lesson.objects.select_related("unit").get(course__slug="code-cells")
    assert [cell["index"] for cell in lesson.code_cells] == list(range(CELL_COUNT))
    return f"/courses/code-cells/{lesson.unit.slug}/{lesson.slug}/"


@pytest.fixture
def learner(db):
    return factories.user_create(username="ada")


@pytest.fixture
def kernels(kernel_manager):
    kernel_manager.start()
    return kernel_manager


class CellsPage:
    """One browser context on the lesson, with every CSP report its console and its documents gave."""

    def __init__(self, browser, live_server, path: str) -> None:
        self.live_server = live_server
        self.path = path
        self.context = browser.new_context(viewport={"width": 1280, "height": 900}, color_scheme="light")
        self.context.set_default_timeout(KERNEL_TIMEOUT_MS)
        self.context.add_init_script(CSP_LISTENER)
        self.page: Page = self.context.new_page()
        self.csp_console: list[str] = []
        self.page_errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda error: self.page_errors.append(str(error)))

    def _console(self, message) -> None:
        if "Content Security Policy" in message.text:
            self.csp_console.append(message.text)

    def open(self) -> Page:
        response = self.page.goto(self.live_server.url + self.path)
        assert response is not None and response.ok, response and response.status
        return self.page

    def log_in(self, username: str) -> Page:
        # The login form, as a learner would use it, straight back to the lesson.
        self.page.goto(f"{self.live_server.url}/accounts/login/?next={quote(self.path)}")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(factories.PASSWORD)
        self.page.get_by_role("button", name="Log in").click()
        self.page.wait_for_url(self.live_server.url + self.path)
        # The page's first question to the server (is there a kernel yet?) has been answered.
        expect(self.kernel_state).to_have_text("No kernel yet: the first Run starts one")
        return self.page

    @property
    def kernel_state(self):
        return self.page.locator(".kernel-state")

    def cell(self, index: int):
        return self.page.locator(f"#code-cell-{index}")

    def output(self, index: int):
        return self.cell(index).locator(".cell-output")

    def run(self, index: int) -> None:
        """Press the cell's Run button and wait for the run to end (its state says how)."""
        self.cell(index).get_by_role("button", name=f"Run cell {index + 1}").click()
        self.finished(index)

    def finished(self, index: int) -> None:
        self.page.wait_for_function(CELL_FINISHED, arg=index, timeout=KERNEL_TIMEOUT_MS)

    def kernel_states_record(self) -> None:
        self.page.evaluate(KERNEL_STATES_RECORD)

    def kernel_states(self) -> list[str]:
        return self.page.evaluate("() => window.__kernelStates")

    def violations(self) -> list[str]:
        return self.page.evaluate("() => window.__cspViolations")

    def screenshot(self, path: Path) -> None:
        # From the top: the kernel bar is sticky, and a full-page capture would draw it wherever the page scrolled.
        self.page.evaluate("() => window.scrollTo(0, 0)")
        self.page.screenshot(path=str(path), full_page=True)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_cells(browser, live_server, lesson_path):
    opened: list[CellsPage] = []

    def open_page() -> CellsPage:
        cells = CellsPage(browser, live_server, lesson_path)
        opened.append(cells)
        return cells

    yield open_page
    for cells in opened:
        cells.close()


def walk_through_the_cells(cells: CellsPage) -> None:
    """Scenario 1: every kind of cell run in order by a logged-in learner, each output checked on the page."""
    page = cells.page
    cells.kernel_states_record()

    cells.run(GREETING)
    cells.run(SHOUT)

    # The bar said the kernel was starting while the first cell waited for it, then that it is ready.
    states = cells.kernel_states()
    assert "Starting…" in states, states
    assert "Ready" in states[states.index("Starting…") :], states
    expect(cells.kernel_state).to_have_text("Ready")
    expect(cells.cell(GREETING).locator(".cell-state")).to_have_text("Ran (#1)")
    expect(cells.output(GREETING)).to_have_text("greeting set")
    # The second cell saw the first one's variable: one kernel, state shared by the page's cells.
    expect(cells.cell(SHOUT).locator(".cell-state")).to_have_text("Ran (#2)")
    expect(cells.output(SHOUT).locator("pre.cell-stdout")).to_have_text("HELLO FROM THE FIRST CELL")

    cells.run(IMAGE)
    image = cells.output(IMAGE).locator("img.cell-image")
    expect(image).to_be_visible()
    expect(image).to_have_attribute("alt", "Output image of cell 3")
    # The browser decoded it: a real 16 x 16 PNG, not a broken-image icon.
    assert image.evaluate("img => img.decode().then(() => [img.naturalWidth, img.naturalHeight])") == [16, 16]

    cells.run(TABLE)
    table = cells.output(TABLE).locator(".cell-html table")
    expect(table).to_be_visible()
    expect(table.locator("th")).to_have_text("seed")
    expect(table.locator("td")).to_have_text("42")
    # The script and the image with an onerror handler were removed on the server; nothing of them ran here.
    assert cells.output(TABLE).locator("script, img").count() == 0
    assert page.evaluate("() => window.cellScriptRan === undefined") is True

    cells.run(TOTAL)
    badge = cells.cell(TOTAL).locator(".cell-badge")
    expect(badge).to_have_text("Check passed")
    expect(badge).to_have_class("cell-badge is-passed")

    cells.run(SQUARES)
    badge = cells.cell(SQUARES).locator(".cell-badge")
    expect(badge).to_have_text("Not passed yet: the check is false")
    expect(badge).to_have_class("cell-badge is-failed")
    expect(cells.output(SQUARES)).to_have_text("[0, 1, 4, 9]")


def test_it_runs_a_learners_cells_in_one_kernel_with_text_images_tables_and_checks(
    open_cells, kernels, learner, screenshots
):
    cells = open_cells()
    cells.log_in("ada")

    walk_through_the_cells(cells)

    cells.screenshot(screenshots / "code-cells-run.png")


def test_it_runs_the_cells_without_a_content_security_policy_violation(open_cells, kernels, learner):
    cells = open_cells()
    cells.log_in("ada")

    walk_through_the_cells(cells)

    assert cells.csp_console == []
    assert cells.violations() == []
    assert cells.page_errors == []


def test_it_interrupts_an_endless_loop_and_keeps_the_kernels_variables(open_cells, kernels, learner, screenshots):
    cells = open_cells()
    page = cells.log_in("ada")
    cells.run(GREETING)

    cells.cell(LOOP).get_by_role("button", name=f"Run cell {LOOP + 1}").click()
    # Its first line printed: the loop is running in the kernel, so the interrupt lands inside it.
    expect(cells.output(LOOP)).to_contain_text("spinning")
    expect(cells.cell(LOOP)).to_have_attribute("aria-busy", "true")
    expect(cells.kernel_state).to_have_text("Busy")
    page.get_by_role("button", name="Interrupt the running cell").click()
    cells.finished(LOOP)

    expect(cells.cell(LOOP).locator(".cell-state")).to_have_text("Interrupted")
    expect(cells.output(LOOP).locator(".cell-error-title strong")).to_have_text("KeyboardInterrupt")
    expect(page.get_by_role("button", name="Interrupt the running cell")).to_be_disabled()
    cells.screenshot(screenshots / "code-cells-interrupted.png")
    cells.run(SHOUT)
    expect(cells.output(SHOUT).locator("pre.cell-stdout")).to_have_text("HELLO FROM THE FIRST CELL")
    expect(cells.kernel_state).to_have_text("Ready")


def test_it_restarts_the_kernel_clearing_outputs_and_forgetting_variables(open_cells, kernels, learner, screenshots):
    cells = open_cells()
    page = cells.log_in("ada")
    cells.run(GREETING)
    cells.run(SHOUT)
    expect(cells.output(SHOUT)).to_contain_text("HELLO FROM THE FIRST CELL")
    cells.kernel_states_record()

    page.get_by_role("button", name="Restart the kernel").click()

    for index in (GREETING, SHOUT):
        expect(cells.output(index)).to_be_empty()
        expect(cells.cell(index).locator(".cell-state")).to_have_text("")
    page.wait_for_function(
        """() => window.__kernelStates.includes("Restarting…")
              && document.querySelector(".kernel-state").textContent === "Ready" """,
        timeout=KERNEL_TIMEOUT_MS,
    )
    cells.run(SHOUT)
    expect(cells.cell(SHOUT).locator(".cell-state")).to_have_text("Raised an error")
    expect(cells.output(SHOUT).locator(".cell-error-title")).to_have_text("NameError: name 'greeting' is not defined")
    cells.screenshot(screenshots / "code-cells-restarted.png")


def test_it_offers_an_anonymous_reader_a_login_link_instead_of_an_editor(open_cells, lesson_path):
    cells = open_cells()
    page = cells.open()

    links = page.get_by_role("link", name="Log in to run this code")
    expect(links).to_have_count(CELL_COUNT)
    assert page.locator("textarea, .kernel-bar, .cell-run").count() == 0
    expect(cells.cell(GREETING).locator("pre code")).to_contain_text('greeting = "hello from the first cell"')
    links.first.click()
    page.wait_for_url(lambda url: url.endswith(f"/accounts/login/?next={quote(lesson_path)}"))


def test_it_runs_the_code_as_the_learner_edited_it(open_cells, kernels, learner):
    cells = open_cells()
    page = cells.log_in("ada")
    editor = cells.cell(SQUARES).get_by_role("textbox", name=f"Code of cell {SQUARES + 1}")

    editor.click()
    page.keyboard.press("ControlOrMeta+a")
    editor.press_sequentially("squares = [n * n for n in range(5)]\nprint('edited', squares)")
    page.keyboard.press("Shift+Enter")
    cells.finished(SQUARES)

    expect(cells.output(SQUARES)).to_have_text("edited [0, 1, 4, 9, 16]")
    expect(cells.cell(SQUARES).locator(".cell-badge")).to_have_text("Check passed")
    # Shift+Enter ran the cell and added no line to it.
    assert editor.input_value() == "squares = [n * n for n in range(5)]\nprint('edited', squares)"
    cells.cell(SQUARES).get_by_role("button", name=f"Reset cell {SQUARES + 1} to its original code").click()
    assert editor.input_value() == "squares = [n * n for n in range(4)]\nprint(squares)"
