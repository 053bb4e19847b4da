"""The web page: `GET /` answers static/index.html, and every other file under
static/ is served at /web/<path>. Plain files, no build step; the page calls the
same API as everyone else (see askgate.auth.cookies for how it keeps a login).

The security headers middleware gives these paths the page's own
Content-Security-Policy (askgate.middleware.WEB_CSP).
"""

import mimetypes
import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from askgate.middleware import WEB_ASSETS_PREFIX, WEB_PAGE_PATH

STATIC = Path(__file__).parent / "static"
# Module scripts are refused unless sent as JavaScript (nosniff), whatever the
# machine's mime.types says.
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/javascript", ".mjs")
mimetypes.add_type("image/svg+xml", ".svg")
# Revalidated on every load (the ETag makes that a 304): an upgraded askgate never
# runs against yesterday's scripts.
REVALIDATE = {"Cache-Control": "no-cache"}


class _Assets(StaticFiles):
    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers.update(REVALIDATE)
        return response


async def _page(request: Request) -> FileResponse:
    return FileResponse(STATIC / "index.html", headers=REVALIDATE)


def install(app: FastAPI) -> None:
    """Serve the page at / and its files under /web/ (not in the API's schema)."""
    app.router.routes.extend(
        [
            Route(WEB_PAGE_PATH, _page, methods=["GET", "HEAD"]),
            Mount(
                WEB_ASSETS_PREFIX.rstrip("/"),
                app=_Assets(directory=STATIC),
                name="web",
            ),
        ]
    )
