"""/v1/docs renders with no network at all (issue 16, item 8).

A real headless Chromium (Debian's ``chromium``, driven by Playwright; never a browser that
Playwright downloads) loads the docs page from ``bms api`` on 127.0.0.1 while every request
to any other address is refused, twice over: Chromium resolves no host name but 127.0.0.1,
and Playwright aborts any request that does not go to the portal. Swagger UI must render
the operations from /v1/openapi.json, with no failed request, no script error and no
Content-Security-Policy violation. Without Chromium the test is skipped, unless
BMS_REQUIRE_BROWSER=1 (CI, set by .ci/run) makes that a failure.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from tests.integration.server import Api, serve_api

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _need_browser() -> None:
    missing = None
    if not os.path.exists(CHROMIUM):
        missing = "chromium is not installed (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "the playwright package is not installed (pip install -e '.[test]')"
    if missing is None:
        return
    if os.environ.get("BMS_REQUIRE_BROWSER") == "1":
        pytest.fail(f"a browser is required (BMS_REQUIRE_BROWSER=1): {missing}")
    pytest.skip(missing)


@pytest.fixture
def api(redis_url: str, tmp_path: Path) -> Iterator[Api]:
    _need_browser()
    with serve_api(redis_url, tmp_path, {}) as running:
        yield running


def test_docs_page_and_assets_are_served_locally_with_caching(api: Api) -> None:
    page = requests.get(api.base + "/v1/docs", timeout=5)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    assert (
        "script-src 'self'" in csp
        and "unsafe-inline" not in csp.split("script-src")[1].split(";")[0]
    )
    assert "http" not in page.text.replace("http-equiv", ""), "the page names an outside URL"
    assert "<script>" not in page.text, "inline script (the CSP forbids it)"
    srcs = [part.split('"')[1] for part in page.text.split("src=")[1:]]
    assert srcs and all(s.startswith("/v1/docs/") for s in srcs), srcs
    for src in srcs:
        r = requests.get(api.base + src, timeout=5)
        assert r.status_code == 200, src
        assert (
            "immutable" in r.headers["Cache-Control"]
            and "max-age=31536000" in r.headers["Cache-Control"]
        )
        assert "javascript" in r.headers["Content-Type"], r.headers["Content-Type"]
    assert (
        requests.get(api.base + "/v1/docs/0.0.1/swagger-ui-bundle.js", timeout=5).status_code == 404
    )
    assert (
        requests.get(
            api.base + "/v1/docs/" + srcs[0].split("/")[3] + "/../app.py", timeout=5
        ).status_code
        == 404
    )


def test_docs_render_in_a_browser_without_network(api: Api, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    refused: list[str] = []
    failed: list[str] = []
    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                # No name resolves, no proxy is reachable: only 127.0.0.1 can be reached.
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--proxy-server=http://127.0.0.1:9",
                "--proxy-bypass-list=127.0.0.1",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 1400})

            def only_the_portal(route, request) -> None:  # type: ignore[no-untyped-def]
                if urlsplit(request.url).hostname == "127.0.0.1" or request.url.startswith("data:"):
                    route.continue_()
                else:
                    refused.append(request.url)
                    route.abort()

            page.route("**/*", only_the_portal)
            page.on("requestfailed", lambda r: failed.append(f"{r.url}: {r.failure}"))
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on(
                "console",
                lambda m: errors.append(m.text) if m.type == "error" else None,
            )
            page.goto(api.base + "/v1/docs", wait_until="networkidle")
            page.wait_for_selector(".opblock-summary-path", timeout=20_000)
            page.screenshot(path=str(tmp_path / "docs.png"), full_page=False)
            title = page.inner_text(".info .title")
            paths = page.locator(".opblock-summary-path").all_inner_texts()
            visible = page.get_by_text("/v1/nodes", exact=True).first.is_visible()
        finally:
            browser.close()
    print(f"screenshot: {tmp_path / 'docs.png'}; {len(paths)} operations rendered")
    assert "BMS Portal" in title
    assert "/v1/nodes" in [p.replace("\u200b", "") for p in paths] and visible
    assert len(paths) > 50, paths
    assert refused == [], refused
    assert failed == [], failed
    assert errors == [], errors
