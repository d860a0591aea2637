"""The browser join page at ``/join/{meeting_id}``: a WebRTC endpoint in a web page.

A person opens ``https://<cloud>/join/<meeting>#token=<device token>`` (``pinhole
join-link`` prints one). The token rides in the URL fragment, which a browser never sends
to a server (RFC 3986 §3.5), so this route sees no credential and needs none: it serves
one self-contained page (no external assets). The page does the rest in the browser:
camera and microphone (or a drawn pattern), one offer with a send-and-receive audio and
video section and receive-only ones for the others' slots, ``POST
/v1/meetings/{id}/webrtc`` with the token, the node's answer applied, the remote streams
shown, and a panel of what ``RTCPeerConnection.getStats()`` says every second. It exposes
``window.pinhole`` (``state``, ``stats``) read-only, for tests and for anybody curious.
"""

from __future__ import annotations

from importlib import resources
from typing import Final

from aiohttp import web

__all__ = ["PAGE_HEADERS", "routes"]

routes = web.RouteTableDef()

#: the console's policy (``cloud.console``): the page's own origin only, its inline style
#: and script; media from the camera and the node are not fetched, so no media-src is needed
PAGE_HEADERS: Final[dict[str, str]] = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; "
                               "script-src 'unsafe-inline'; connect-src 'self'",
    "Referrer-Policy": "no-referrer",
}


@routes.get("/join/{meeting_id}")
async def join_page(request: web.Request) -> web.Response:
    """The page for any meeting id: the page asks the API, which says if it does not exist."""
    page = resources.files("cloud").joinpath("join.html").read_text()
    return web.Response(text=page, content_type="text/html", headers=PAGE_HEADERS)
