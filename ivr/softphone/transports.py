"""How the walker reaches the IVR: in-process through Flask, or over HTTP.

Both transports only ever talk to one IVR: the walker hands them a path and query
(``/ivr/step?n=3``), never a full URL, so a TwiML document cannot send them elsewhere.
A reply of any status is returned, not raised: a 403 or a 500 is something the walker
records, as Twilio would log it.
"""

from __future__ import annotations

import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Protocol

from flask import Flask

TWILIO_TIMEOUT_SECONDS = 15.0


@dataclass(frozen=True)
class HttpReply:
    status: int
    body: str
    content_type: str


class TransportError(Exception):
    """The IVR could not be reached at all (refused, timed out): Twilio's error 11200."""


class Transport(Protocol):
    """Sends one webhook request to the IVR."""

    def post(self, path_and_query: str, params: dict[str, str], headers: dict[str, str]) -> HttpReply:
        """POST ``params`` form-encoded to ``path_and_query`` (which starts with ``/``)."""
        ...

    def get(self, path_and_query: str, headers: dict[str, str]) -> HttpReply:
        """GET ``path_and_query`` (a ``<Redirect method="GET">``; parameters are in the query)."""
        ...


def _check_path(path_and_query: str) -> None:
    # "//evil.example/x" would be a network-path reference: refuse anything but a path.
    if not path_and_query.startswith("/") or path_and_query.startswith("//"):
        raise ValueError(f"expected a path starting with one '/', got {path_and_query!r}")


class FlaskTransport:
    """In-process: the app's test client, no sockets, one request context per webhook.

    ``base_url`` (e.g. the public URL) sets the scheme and host the app sees, so an app
    that checks signatures against its own request URL sees what Twilio would have called.
    """

    def __init__(self, app: Flask, base_url: str = "http://localhost") -> None:
        self._client = app.test_client()
        self._base_url = base_url

    def post(self, path_and_query: str, params: dict[str, str], headers: dict[str, str]) -> HttpReply:
        _check_path(path_and_query)
        response = self._client.post(path_and_query, data=params, headers=headers, base_url=self._base_url)
        return HttpReply(response.status_code, response.get_data(as_text=True), response.content_type or "")

    def get(self, path_and_query: str, headers: dict[str, str]) -> HttpReply:
        _check_path(path_and_query)
        response = self._client.get(path_and_query, headers=headers, base_url=self._base_url)
        return HttpReply(response.status_code, response.get_data(as_text=True), response.content_type or "")


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx comes back as the reply (an ``HTTPError``) instead of being followed."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


class HttpTransport:
    """Over the network to a running IVR (``securepay serve``, gunicorn), as Twilio calls it.

    Only ``base_url`` is ever contacted; like Twilio, a request gives up after 15 s.
    """

    def __init__(self, base_url: str, timeout: float = TWILIO_TIMEOUT_SECONDS) -> None:
        parts = urllib.parse.urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"expected an http(s) base URL like http://127.0.0.1:5000, got {base_url!r}")
        self._base_url = base_url.rstrip("/")
        self._timeout = timeout
        # No proxies from the environment and no following of HTTP redirects: the reply
        # of the configured IVR is what gets recorded, and no other host is ever called.
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _RefuseRedirects())

    def post(self, path_and_query: str, params: dict[str, str], headers: dict[str, str]) -> HttpReply:
        body = urllib.parse.urlencode(params).encode()
        headers = {**headers, "Content-Type": "application/x-www-form-urlencoded"}
        return self._send("POST", path_and_query, body, headers)

    def get(self, path_and_query: str, headers: dict[str, str]) -> HttpReply:
        return self._send("GET", path_and_query, None, headers)

    def _send(
        self, method: str, path_and_query: str, body: bytes | None, headers: dict[str, str]
    ) -> HttpReply:
        _check_path(path_and_query)
        url = self._base_url + path_and_query
        request = urllib.request.Request(url, data=body, headers=headers, method=method)  # noqa: S310 - scheme checked in __init__
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                return HttpReply(
                    response.status,
                    response.read().decode("utf-8", "replace"),
                    response.headers.get("Content-Type", ""),
                )
        except urllib.error.HTTPError as exc:
            with exc:
                return HttpReply(
                    exc.code,
                    exc.read().decode("utf-8", "replace"),
                    exc.headers.get("Content-Type", ""),
                )
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise TransportError(f"{method} {url}: {getattr(exc, 'reason', exc)}") from exc
