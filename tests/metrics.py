"""One series read from a Prometheus text page (a node's or the cloud's ``/metrics``)."""

from __future__ import annotations

import re
import ssl

import aiohttp


async def metric(url: str, name: str, *, context: ssl.SSLContext | None = None,
                 **labels: str) -> float:
    """The value of ``name{labels}`` on the page at ``url``; 0 when it is not there yet."""
    verify: ssl.SSLContext | bool = True if context is None else context
    async with aiohttp.ClientSession() as http, http.get(url, ssl=verify) as response:
        text = await response.text()
    label = ",".join(f'{k}="{v}"' for k, v in labels.items())
    series = re.escape(name) + (rf"\{{{re.escape(label)}\}}" if labels else "")
    match = re.search(rf"^{series} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0
