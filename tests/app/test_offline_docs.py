"""/docs and /redoc load Swagger UI and ReDoc from the server itself, never from a CDN."""

from __future__ import annotations

import re

import pytest

from app.main import DOCS_ASSETS_URL
from app.routes.redoc import BUNDLE_URL, CDN_LOGO, shipped_bundle

# Every URL a page names in src= or href=, and in the scripts' url: '...'.
URL = re.compile(r"""(?:src|href)=["']([^"']+)["']|url:\s*'([^']+)'""")


def urls(html: str) -> list[str]:
    return [a or b for a, b in URL.findall(html)]


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
def test_docs_pages_name_only_the_servers_own_assets(client, path):
    response = client.get(path)

    assert response.status_code == 200
    named = urls(response.text)
    assert named, response.text
    assert not [url for url in named if "//" in url], named
    for url in named:
        if url.startswith("/") and not url.endswith(".json"):
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 1000, url  # the real bundle, not a placeholder


def test_swagger_ui_sends_the_spec_to_no_online_validator(client):
    # Swagger UI's default validatorUrl is swagger.io's, which it asks about every spec that is
    # not served from localhost: off, or an air-gapped /docs makes an outside request.
    assert '"validatorUrl": null' in client.get("/docs").text


def test_redoc_loads_no_web_fonts(client):
    assert "fonts.googleapis" not in client.get("/redoc").text


def test_redoc_bundle_is_the_shipped_one_without_its_cdn_logo(client):
    shipped = shipped_bundle().read_bytes()
    served = client.get(BUNDLE_URL)

    assert served.status_code == 200
    assert served.headers["content-type"].startswith("text/javascript")
    assert shipped.count(CDN_LOGO) == 1  # a new fastapi-offline may fetch more: look again
    assert CDN_LOGO not in served.content
    before, after = shipped.split(CDN_LOGO)
    assert served.content.startswith(before)
    assert served.content.endswith(after)


def test_docs_assets_are_off_with_the_docs(serve, demo_store):
    with serve(demo_store, docs_enabled=False) as client:
        for path in (f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js", BUNDLE_URL):
            assert client.get(path).status_code == 404, path
