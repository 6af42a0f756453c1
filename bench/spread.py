"""The load balancer of ``make bench-scale``: each request of a call to the next app server.

A round-robin balancer in front of N app servers sends each request to the next server,
whatever call it belongs to: a call's steps land on different servers, which is what
"any worker of any server can answer any step" (call state in PostgreSQL, keyed by
CallSid) has to survive. Here the generator is the balancer. Request ``k`` of the call
with offset ``c`` goes to server ``(c + k) mod N``: consecutive requests of one call
always change server (with N >= 2), and offsets taken from consecutive account numbers
start consecutive calls on different servers, so the load is even.

The requests are signed for the public URL (the balancer's, ``SECUREPAY_PUBLIC_URL`` on
every server), not for the address of the server that answers, as Twilio signs them.
"""

from __future__ import annotations

from collections.abc import Sequence

from ivr.softphone import HttpReply, HttpTransport


def server_for(offset: int, request: int, servers: int) -> int:
    """The index of the server that answers request ``request`` (0-based) of a call."""
    if servers < 1:
        raise ValueError("need at least one server")
    if request < 0:
        raise ValueError("requests are numbered from 0")
    return (offset + request) % servers


def requests_per_server(offsets_and_lengths: Sequence[tuple[int, int]], servers: int) -> list[int]:
    """How many requests each server got, for calls given as (offset, requests made)."""
    counts = [0] * servers
    for offset, length in offsets_and_lengths:
        for request in range(length):
            counts[server_for(offset, request, servers)] += 1
    return counts


class RoundRobinTransport:
    """An ``HttpTransport`` over several base URLs: each request to the next in turn."""

    def __init__(self, base_urls: Sequence[str], offset: int) -> None:
        if not base_urls:
            raise ValueError("need at least one server")
        self._servers = [HttpTransport(url) for url in base_urls]
        self._offset = offset
        self._sent = 0

    def _next(self) -> HttpTransport:
        server = self._servers[server_for(self._offset, self._sent, len(self._servers))]
        self._sent += 1
        return server

    def post(self, path_and_query: str, params: dict[str, str], headers: dict[str, str]) -> HttpReply:
        return self._next().post(path_and_query, params, headers)

    def get(self, path_and_query: str, headers: dict[str, str]) -> HttpReply:
        return self._next().get(path_and_query, headers)
