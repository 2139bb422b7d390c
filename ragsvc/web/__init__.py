"""The web page at `/`: upload, follow jobs, list and delete documents, ask with a streamed
answer and its sources. Three static files in this folder, served as they are: no build step,
nothing fetched from elsewhere (the Content-Security-Policy allows this origin only). The page
itself holds no data, so it is public; its API calls carry the key kept in the tab's session
storage, and without keys the loopback rules of `api/auth.py` apply to them as to any client.
"""

from __future__ import annotations

from importlib import resources
from typing import Annotated

from litestar import Response, get
from litestar.params import PathParameter

from indexes import NotFound

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
_TYPES = {"app.js": "text/javascript; charset=utf-8", "style.css": "text/css; charset=utf-8"}
_FILES = {name: resources.files(__name__).joinpath(name).read_bytes() for name in _TYPES}
_PAGE = resources.files(__name__).joinpath("index.html").read_bytes()
_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


@get("/", opt={"public": True}, include_in_schema=False)
async def page() -> Response[bytes]:
    return Response(_PAGE, media_type="text/html; charset=utf-8", headers=_HEADERS)


@get("/ui/{name:str}", opt={"public": True}, include_in_schema=False)
async def asset(
    name: Annotated[str, PathParameter(max_length=64, description="A file of the page")],
) -> Response[bytes]:
    if name not in _FILES:
        raise NotFound(f"no file {name!r} in the page")
    return Response(_FILES[name], media_type=_TYPES[name], headers=_HEADERS)
