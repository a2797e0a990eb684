"""Which redirects a POST may follow: a 307 or 308 to the same origin, and nothing else.

aiohttp, like browsers, answers a 301, 302 or 303 to a POST with a GET to the new address, which
ends in a puzzling 405 or a page that is not an answer; and it follows a redirect to any host,
sending the key there. The transport follows redirects by hand, asking `redirect_target` first.
"""

from __future__ import annotations

from urllib.parse import urljoin, urlsplit

from batchrun.errors import Redirected

MAX_REDIRECTS = 5
_DEFAULT_PORTS = {"http": 80, "https": 443}


def redirect_target(provider: str, url: str, status: int, location: str | None) -> str:
    """Where a 307/308 to the same origin leads; raises Redirected for any other redirect."""
    if not location:
        raise Redirected(f"{provider}: HTTP {status} for POST {url} names no Location to go to; "
                         "check base_url", status=status)
    target = urljoin(url, location)
    if status in (307, 308):
        if _origin(target) == _origin(url):
            return target
        why = "another origin, where the key is not sent"
    elif status in (301, 302, 303):
        why = f"following an HTTP {status} would turn the POST into a GET"
    else:
        why = f"HTTP {status} is not a redirect a POST can follow"
    raise Redirected(
        f"{provider}: HTTP {status} redirects POST {url} to {target} ({why}); "
        "set base_url to the new address if it is the right one", status=status)


def too_many_redirects(provider: str, url: str) -> Redirected:
    """The error for a chain of same-origin redirects that does not end."""
    return Redirected(f"{provider}: more than {MAX_REDIRECTS} redirects from POST {url}; "
                      "set base_url to the address they end at")


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    return parts.scheme, parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme)
