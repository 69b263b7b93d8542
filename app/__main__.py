"""`python -m app`: serve `app.main:app` with uvicorn, configured from the settings."""

from __future__ import annotations

import uvicorn

from app.config import get_settings


def main() -> None:
    settings = get_settings()
    uvicorn.run(
        "app.main:app",
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        # uvicorn's access log costs ~40 µs a request, more than the model itself.
        access_log=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
