"""A real browser for the end-to-end tests: headless Chromium driven by Playwright.

Chromium is Debian's `chromium` package (tests/run-all.sh installs it); Playwright
never downloads a browser of its own. Every page the tests look at is checked with
axe-core (tests/browser, npm) and photographed at phone and desktop widths into
tests/e2e/.artifacts/screenshots/.

The browser reaches only the server under test: any request to another host fails
the test, except the portal module's redirect URI, answered by route interception
(nothing listens on localhost:8081).
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from idp_server import REPO_ROOT

CHROMIUM = Path(os.environ.get("DGE_CHROMIUM", "/usr/bin/chromium"))
AXE_JS = REPO_ROOT / "tests" / "browser" / "node_modules" / "axe-core" / "axe.min.js"
SCREENSHOTS = REPO_ROOT / "tests" / "e2e" / ".artifacts" / "screenshots"
PHONE = {"width": 375, "height": 812}
DESKTOP = {"width": 1280, "height": 900}
TIMEOUT_MS = 15_000
# What axe must not find: WCAG 2.1 A/AA and best practices, serious or critical.
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
BLOCKING_IMPACTS = {"serious", "critical"}
_LOOPBACK = {"127.0.0.1", "localhost"}


def require_tools() -> None:
    """Fails (never skips) with what is missing."""
    missing = []
    if not CHROMIUM.is_file():
        missing.append(f"{CHROMIUM} (Debian package `chromium`; tests/run-all.sh installs it)")
    if not AXE_JS.is_file():
        missing.append(f"{AXE_JS} (run `npm ci --prefix tests/browser`; tests/run-all.sh does)")
    if importlib.util.find_spec("playwright") is None:
        missing.append("the Python package playwright (tests/e2e/requirements.txt)")
    if missing:
        pytest.fail("the browser tests need: " + "; ".join(missing), pytrace=False)


@dataclass
class Callback:
    """The module's redirect URI, answered in the browser by route interception."""

    prefix: str
    urls: list[str] = field(default_factory=list)


@dataclass
class Tab:
    """One browser context (its own cookies) and its page, with what the tests watch."""

    context: object
    page: object
    callback: Callback
    outside: list[str] = field(default_factory=list)
    csp_errors: list[str] = field(default_factory=list)
    shots: int = 0
    context_js: bool = True
    prefix: str = "page"

    def goto(self, url: str):
        return self.page.goto(url, wait_until="load")

    def check(self, name: str, *, axe: bool = True) -> None:
        """axe-core on the page as it is (no serious or critical violation), the page
        in French, then screenshots at phone and desktop widths."""
        page = self.page
        assert (page.get_attribute("html", "lang") or "").startswith("fr"), f"{name}: not in French"
        if axe:
            if self.context_js:
                violations = page.evaluate(
                    """async (tags) => {
                        const result = await axe.run(document, {runOnly: {type: 'tag', values: tags}});
                        return result.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                            nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}));
                    }""",
                    AXE_TAGS,
                )
                blocking = [v for v in violations if v["impact"] in BLOCKING_IMPACTS]
                assert not blocking, f"axe-core on {name} ({page.url}): {blocking}"
        self.shots += 1
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        stem = f"{self.prefix}-{self.shots:02d}-{name}"
        for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
            page.set_viewport_size(size)
            page.screenshot(path=str(SCREENSHOTS / f"{stem}-{label}.png"), full_page=True)
        page.set_viewport_size(DESKTOP)
        assert not self.csp_errors, f"Content-Security-Policy violations: {self.csp_errors}"
        assert not self.outside, f"the page asked other hosts: {self.outside}"


def _route(tab: Tab, base_url: str):
    base_host = urlsplit(base_url).netloc

    def handle(route):
        url = route.request.url
        if url.startswith(tab.callback.prefix):
            tab.callback.urls.append(url)
            route.fulfill(
                status=200,
                content_type="text/html; charset=utf-8",
                body='<!doctype html><html lang="fr"><head><title>Portail</title></head>'
                "<body><main><h1>Retour au portail</h1></main></body></html>",
            )
            return
        parts = urlsplit(url)
        if parts.scheme in ("data", "blob", "about") or parts.netloc == base_host:
            route.continue_()
            return
        tab.outside.append(url)
        route.abort()

    return handle


class Browser:
    """A headless Chromium for one test module."""

    def __init__(self):
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self._chromium = self._playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            # No proxy, and only loopback names resolve: nothing leaves the machine.
            args=[
                "--no-proxy-server",
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-features=Translate,OptimizationHints,MediaRouter",
            ],
        )
        self._axe = AXE_JS.read_text(encoding="utf-8")

    def tab(self, base_url: str, callback_prefix: str, *, prefix: str, javascript: bool = True) -> Tab:
        context = self._chromium.new_context(
            locale="fr-FR",
            viewport=DESKTOP,
            java_script_enabled=javascript,
        )
        context.set_default_timeout(TIMEOUT_MS)
        if javascript:
            # An init script is injected by the DevTools protocol, outside the page's CSP.
            context.add_init_script(script=self._axe)
        page = context.new_page()
        tab = Tab(context, page, Callback(callback_prefix), context_js=javascript, prefix=prefix)
        context.route("**/*", _route(tab, base_url))

        def on_console(message):
            if re.search(r"Content.Security.Policy", message.text, re.IGNORECASE):
                tab.csp_errors.append(message.text)

        page.on("console", on_console)
        return tab

    def close(self) -> None:
        self._chromium.close()
        self._playwright.stop()


def chromium_fixture():
    """One headless Chromium per test module. Test modules make it a fixture:
    `chromium = pytest.fixture(scope="module", name="chromium")(chromium_fixture)`."""
    require_tools()
    browser = Browser()
    yield browser
    browser.close()
