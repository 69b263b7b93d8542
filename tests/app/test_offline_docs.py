"""/docs and /redoc load Swagger UI and ReDoc from the server itself, never from a CDN."""

from __future__ import annotations

import re

import pytest

from app.main import DOCS_ASSETS_URL

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
        if url.startswith(DOCS_ASSETS_URL + "/"):
            asset = client.get(url)
            assert asset.status_code == 200, url
            assert len(asset.content) > 1000, url  # the real bundle, not a placeholder


def test_swagger_ui_sends_the_spec_to_no_online_validator(client):
    # Swagger UI's default validatorUrl is swagger.io's, which it asks about every spec that is
    # not served from localhost: off, or an air-gapped /docs makes an outside request.
    assert '"validatorUrl": null' in client.get("/docs").text


def test_redoc_loads_no_web_fonts(client):
    assert "fonts.googleapis" not in client.get("/redoc").text


def test_docs_assets_are_off_with_the_docs(serve, demo_store):
    with serve(demo_store, docs_enabled=False) as client:
        assert client.get(f"{DOCS_ASSETS_URL}/swagger-ui-bundle.js").status_code == 404
