"""``make bench-scale``'s own logic: the round-robin balancer, the namespace plan, the
order of the measured slices, the checks and the ratio (issue 12, item 5).

The namespaces themselves are made only where this runs as root with a working
``ip netns`` (skipped otherwise): made, reachable, and gone afterwards.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from bench import netns, scale, scale_phases, scale_report, spread

# --- the balancer ------------------------------------------------------------------------


def test_consecutive_requests_of_a_call_go_to_different_servers() -> None:
    for offset in range(5):
        chosen = [spread.server_for(offset, k, 2) for k in range(9)]
        assert all(a != b for a, b in zip(chosen, chosen[1:], strict=False))
        assert set(chosen) == {0, 1}


def test_consecutive_calls_spread_the_requests_evenly() -> None:
    calls = [(offset, 9) for offset in range(100, 200)]  # 100 calls of 9 requests, odd length
    assert spread.requests_per_server(calls, 2) == [450, 450]
    assert spread.requests_per_server(calls, 3) == [300, 300, 300]
    assert spread.requests_per_server([(7, 9)], 1) == [9]


def test_server_for_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        spread.server_for(0, 0, 0)
    with pytest.raises(ValueError):
        spread.server_for(0, -1, 2)


class _Named(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(length)
        body = self.server.name.encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def two_servers() -> Iterator[list[str]]:
    servers = []
    for name in ("one", "two"):
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Named)
        server.name = name  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    try:
        yield [f"http://127.0.0.1:{s.server_address[1]}" for s in servers]
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def test_the_transport_sends_each_request_to_the_next_server(two_servers: list[str]) -> None:
    transport = spread.RoundRobinTransport(two_servers, offset=1)
    answered = [transport.post("/ivr/voice", {"CallSid": "CA1"}, {}).body for _ in range(5)]
    assert answered == ["two", "one", "two", "one", "two"]


# --- the namespace plan ------------------------------------------------------------------


def test_the_plan_gives_each_namespace_its_own_30_on_free_addresses() -> None:
    taken = netns.parse_networks(
        "2: eth0    inet 10.231.0.1/30 brd 10.231.0.3 scope global eth0\n"
        "10.231.0.8/29 dev wg0 proto kernel scope link\n"
        "default via 172.17.0.1 dev eth0\n"
    )
    plans = netns.plan(3, 4242, taken)
    subnets = [ipaddress.ip_interface(f"{p.address}/30").network for p in plans]
    assert [str(s) for s in subnets] == ["10.231.0.4/30", "10.231.0.16/30", "10.231.0.20/30"]
    for p, subnet in zip(plans, subnets, strict=True):
        assert ipaddress.ip_address(p.host_address) in subnet and p.host_address != p.address
        assert len(p.host_link) <= netns.IFNAME_MAX and len(p.inner_link) <= netns.IFNAME_MAX
        assert p.exec_prefix() == ("ip", "netns", "exec", p.name)
    assert len({p.name for p in plans}) == len({p.host_link for p in plans}) == 3
    assert all(p.name.startswith(netns.NAME_PREFIX + "4242-") for p in plans)
    with pytest.raises(ValueError):
        netns.plan(0, 1)


def test_the_plan_says_when_no_address_is_left() -> None:
    with pytest.raises(netns.NetnsUnavailable):
        netns.plan(1, 1, [netns.BASE_NETWORK])


def test_only_our_namespaces_of_dead_runs_are_stale() -> None:
    names = [
        f"{netns.NAME_PREFIX}111-0",
        f"{netns.NAME_PREFIX}111-1",
        f"{netns.NAME_PREFIX}222-0",
        "someone-elses",
        f"{netns.NAME_PREFIX}x-0",
    ]
    assert netns.stale(names, alive=lambda pid: pid == 222) == names[:2]


def test_the_servers_reach_postgresql_by_its_socket() -> None:
    url = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_scale"
    assert scale.via_socket(url, "/var/run/postgresql") == (
        "postgresql+psycopg://postgres@/bench_scale?host=%2Fvar%2Frun%2Fpostgresql&port=5432"
    )


# --- the slices, the checks and the ratio -----------------------------------------------


def test_slices_alternate_so_a_drift_weighs_on_both() -> None:
    assert scale_phases.schedule(1) == [scale_phases.ALONE, scale_phases.TOGETHER]
    assert scale_phases.schedule(2) == [
        scale_phases.ALONE,
        scale_phases.TOGETHER,
        scale_phases.TOGETHER,
        scale_phases.ALONE,
    ]
    assert scale_phases.schedule(3).count(scale_phases.ALONE) == 3
    assert scale_phases.split(list(range(7)), 2) == [[0, 1, 2, 3], [4, 5, 6]]
    assert sum(len(s) for s in scale_phases.split(list(range(300)), 4)) == 300


def _phase(
    name: str, calls_per_second: float, planned: int = 10, completed: int = 10, errors: int = 0
) -> Any:
    return {
        "name": name,
        "calls_planned": planned,
        "calls_completed": completed,
        "errors": errors,
        "calls_per_second": calls_per_second,
        "calls_per_bench_cpu_second": 2.0,
    }


def _figures(**money: Any) -> dict[str, Any]:
    paid = {
        "processor_succeeded": 20,
        "ledger_payments": 20,
        "expected_payments": 20,
        "processor_cents": 500,
        "ledger_cents": 500,
        "expected_cents": 500,
        "match": True,
    }
    return {
        "phases": [_phase(scale_phases.ALONE, 4.0), _phase("2" + scale_phases.TOGETHER, 5.0)],
        "money": {**paid, **money},
        "audit": {"verify": {"exit": 0, "output": "20 events, chain intact"}, "intact": True},
    }


def test_the_checks_pass_on_a_clean_run_and_the_ratio_is_together_over_alone() -> None:
    figures = _figures()
    assert [c.passed for c in scale_report.checks(figures)] == [True, True, True]
    assert scale_report.speedup(figures["phases"]) == 1.25
    # The same work per CPU second: the gain came from a larger share of a busy machine.
    assert scale_report.speedup(figures["phases"], "calls_per_bench_cpu_second") == 1.0


def test_an_error_a_money_mismatch_or_a_broken_chain_fails_its_check() -> None:
    figures = _figures(match=False)
    figures["phases"][1] = _phase("2" + scale_phases.TOGETHER, 5.0, completed=9, errors=1)
    figures["audit"] = {"verify": {"exit": 1, "output": "event 7 changed"}, "intact": False}
    assert [c.passed for c in scale_report.checks(figures)] == [False, False, False]


def test_a_call_not_completed_is_not_a_pass() -> None:
    figures = _figures()
    figures["phases"][0] = _phase(scale_phases.ALONE, 4.0, planned=10, completed=8)  # cut by the deadline
    assert scale_report.checks(figures)[0].passed is False


# --- the namespaces themselves (root only) -----------------------------------------------


def _can_make_namespaces() -> bool:
    if os.geteuid() != 0:
        return False
    try:
        netns.existing()
    except (netns.NetnsUnavailable, subprocess.CalledProcessError, OSError):
        return False
    return True


@pytest.mark.skipif(not _can_make_namespaces(), reason="needs root and a working `ip netns`")
def test_namespaces_are_made_reachable_and_removed() -> None:
    plans = netns.plan(2, os.getpid(), netns.host_networks())
    made = netns.Namespaces(plans)
    with made:
        server = ThreadingHTTPServer((made.shared_address, 0), _Named)
        server.name = "host"  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            assert {p.name for p in plans} <= set(netns.existing())
            fetch = (
                "import urllib.request as u; "
                f"print(u.urlopen(u.Request('http://{made.shared_address}:{server.server_address[1]}/', "
                "data=b'x'), timeout=5).read().decode())"
            )
            for p in plans:  # each namespace reaches the one shared host address
                done = subprocess.run(
                    [*p.exec_prefix(), sys.executable, "-c", fetch],
                    capture_output=True,
                    text=True,
                    timeout=30,
                )
                assert done.stdout.strip() == "host", done.stderr
        finally:
            server.shutdown()
            server.server_close()
    assert not {p.name for p in plans} & set(netns.existing())
    assert made.leftovers == []
