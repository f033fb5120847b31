"""``/docs`` and ``/redoc`` render in a real browser that may reach nothing but the
gateway: every operation of the served document is on the page, and no request left
loopback (FastAPI's own pages load their assets from a CDN, and stay blank offline)."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from producer.gateway.docs import ASSET_PATHS, ASSETS_URL

from .conftest import BrowserStack, PageLog

SUBMIT = "/v1/sessions/{session_id}/runs"


@pytest.fixture(scope="module")
def document(browser_stack: BrowserStack) -> dict:
    return httpx.get(f"{browser_stack.base_url}/openapi.json").raise_for_status().json()


def operations(document: dict) -> list[dict]:
    return [
        operation
        for methods in document["paths"].values()
        for method, operation in methods.items()
        if method in ("get", "put", "post", "delete", "patch")
    ]


def test_the_pages_and_their_assets_need_no_token_and_nothing_off_site(
    browser_stack: BrowserStack,
):
    with httpx.Client(base_url=browser_stack.base_url) as anonymous:
        for page in ("/docs", "/redoc"):
            html = anonymous.get(page).raise_for_status().text
            assert "cdn." not in html and "fonts.googleapis" not in html, page
        for path in sorted(ASSET_PATHS):
            response = anonymous.get(path)
            assert response.status_code == 200, path
            assert len(response.content) > 1000, path
        assert anonymous.get(f"{ASSETS_URL}/other.js").status_code == 401  # only those
        assert anonymous.get("/v1/sessions").status_code == 401


def test_swagger_ui_renders_every_operation_offline(
    browser_stack: BrowserStack, document: dict, page: Page, page_log: PageLog, screenshot
):
    page.goto(f"{browser_stack.base_url}/docs")
    submit = page.locator(f'.opblock-summary-path[data-path="{SUBMIT}"]')
    expect(submit.first).to_be_visible()
    expect(page.locator(".info .title")).to_contain_text(document["info"]["title"])
    rendered = page.locator(".opblock-summary-path").evaluate_all(
        "nodes => nodes.map(node => node.dataset.path)"
    )
    assert sorted(set(rendered)) == sorted(document["paths"])
    assert len(rendered) == len(operations(document))
    assert screenshot("swagger-ui").stat().st_size > 0
    assert page_log.offsite == []
    assert page_log.errors == []


def test_redoc_renders_every_operation_offline(
    browser_stack: BrowserStack, document: dict, page: Page, page_log: PageLog, screenshot
):
    page.goto(f"{browser_stack.base_url}/redoc")
    for operation in operations(document):
        section = page.locator(f'[data-section-id="operation/{operation["operationId"]}"]')
        expect(section.locator("h2").first).to_have_text(operation["summary"])
    assert screenshot("redoc", full_page=False).stat().st_size > 0
    assert page_log.offsite == []
    assert page_log.errors == []
