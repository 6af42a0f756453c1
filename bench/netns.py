"""Network namespaces for ``make bench-scale``: each app server on an address of its own.

Each namespace gets a veth pair: one end stays on the host, the other is moved inside,
with the two addresses of a /30 of ``10.231.0.0/16`` that no address or route of the host
already uses. The host reaches every server on its own address (port 8000 in each, as two
machines would have); nothing inside can reach anything else: no default route, only a
/32 route to the one address on the host that the servers share (where localstripe
listens), through their own veth. PostgreSQL listens on 127.0.0.1 of the host, which a
namespace cannot reach: the servers use its Unix socket (file system paths are not
namespaced).

Everything made is removed on the way out, on failure too (``Namespaces.__exit__``);
namespaces left by a bench that was killed outright carry its pid in their name and are
removed by the next run (``stale``). Needs root and ``ip`` (iproute2): ``NetnsUnavailable``
otherwise, and the bench falls back to two ports on 127.0.0.1.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import TracebackType

BASE_NETWORK = ipaddress.IPv4Network("10.231.0.0/16")
NAME_PREFIX = "securepay-scale-"
_NAME = re.compile(rf"{re.escape(NAME_PREFIX)}(\d+)-(\d+)")
IFNAME_MAX = 15  # IFNAMSIZ - 1


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be made here (not root, no ``ip``, or the kernel refused)."""


@dataclass(frozen=True)
class Namespace:
    """One app server's namespace: its name, the veth ends and their addresses."""

    name: str
    host_link: str
    inner_link: str
    host_address: str
    address: str
    prefix_length: int = 30

    def exec_prefix(self, ip: str = "ip") -> tuple[str, ...]:
        """The command prefix that runs a program inside (``ip netns exec NAME``)."""
        return (ip, "netns", "exec", self.name)


def plan(count: int, tag: int, taken: Iterable[ipaddress.IPv4Network] = ()) -> list[Namespace]:
    """``count`` namespaces named for ``tag`` (the bench's pid), each on the first /30 of
    ``BASE_NETWORK`` that overlaps none of ``taken`` (the host's addresses and routes)."""
    if count < 1:
        raise ValueError("need at least one namespace")
    used = list(taken)
    found: list[Namespace] = []
    for subnet in BASE_NETWORK.subnets(new_prefix=30):
        if len(found) == count:
            break
        if any(subnet.overlaps(other) for other in used):
            continue
        host, inner = list(subnet.hosts())
        n = len(found)
        found.append(
            Namespace(
                name=f"{NAME_PREFIX}{tag}-{n}",
                host_link=f"spx{tag % 100_000}h{n}",
                inner_link=f"spx{tag % 100_000}n{n}",
                host_address=str(host),
                address=str(inner),
            )
        )
    if len(found) < count:
        raise NetnsUnavailable(f"no free /30 left in {BASE_NETWORK}")
    for namespace in found:
        if max(len(namespace.host_link), len(namespace.inner_link)) > IFNAME_MAX:
            raise ValueError(f"interface name too long: {namespace.host_link}")
    return found


def parse_networks(ip_output: str) -> list[ipaddress.IPv4Network]:
    """The IPv4 networks named in ``ip -o -4 addr`` or ``ip -4 route`` output."""
    found = []
    for word in re.findall(r"\b\d{1,3}(?:\.\d{1,3}){3}(?:/\d{1,2})?\b", ip_output):
        try:
            found.append(ipaddress.IPv4Interface(word).network)
        except ValueError:
            continue
    return found


def stale(names: Iterable[str], alive: Callable[[int], bool]) -> list[str]:
    """The namespaces of ours whose bench (the pid in the name) is no longer running."""
    return [name for name in names if (m := _NAME.fullmatch(name)) and not alive(int(m.group(1)))]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ip_binary() -> str:
    found = shutil.which("ip")
    if found is None:
        raise NetnsUnavailable("no `ip` command (iproute2)")
    return found


def _ip(*args: str) -> str:
    done = subprocess.run(  # noqa: S603 - iproute2 with arguments of our own
        [_ip_binary(), *args], capture_output=True, text=True, check=False, timeout=20
    )
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, ["ip", *args], done.stdout, done.stderr)
    return done.stdout


def existing() -> list[str]:
    """The names of the host's network namespaces (``ip netns list``)."""
    return [line.split()[0] for line in _ip("netns", "list").splitlines() if line.strip()]


def host_networks() -> list[ipaddress.IPv4Network]:
    return parse_networks(_ip("-o", "-4", "addr", "show")) + parse_networks(_ip("-4", "route", "show"))


def remove_stale() -> list[str]:
    """Remove the namespaces a killed bench left behind; their names."""
    gone = stale(existing(), pid_alive)
    for name in gone:
        _remove(name, None)
    return gone


def _remove(name: str, host_link: str | None) -> None:
    try:
        _ip("netns", "delete", name)  # takes the inner veth end, and its peer, with it
    except subprocess.CalledProcessError:
        pass
    if host_link is not None:
        try:
            _ip("link", "delete", host_link)
        except subprocess.CalledProcessError:
            pass  # already gone with its peer


class Namespaces:
    """Make the planned namespaces and their links; remove them all on the way out.

    ``shared_address`` (default: the first namespace's host address) is reachable from
    every namespace: each gets a /32 route to it through its own veth.
    """

    def __init__(self, plans: Sequence[Namespace], shared_address: str | None = None) -> None:
        self.plans = list(plans)
        self.shared_address = shared_address or self.plans[0].host_address
        self._made: list[Namespace] = []
        self.leftovers: list[str] = []

    def __enter__(self) -> Namespaces:
        if os.geteuid() != 0:
            raise NetnsUnavailable("not root: network namespaces need CAP_SYS_ADMIN")
        _ip_binary()
        try:
            for ns in self.plans:
                _ip("netns", "add", ns.name)
                self._made.append(ns)
                _ip(
                    "link",
                    "add",
                    ns.host_link,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    ns.inner_link,
                    "netns",
                    ns.name,
                )
                _ip("addr", "add", f"{ns.host_address}/{ns.prefix_length}", "dev", ns.host_link)
                _ip("link", "set", ns.host_link, "up")
                _ip("-n", ns.name, "link", "set", "lo", "up")
                _ip("-n", ns.name, "addr", "add", f"{ns.address}/{ns.prefix_length}", "dev", ns.inner_link)
                _ip("-n", ns.name, "link", "set", ns.inner_link, "up")
                if ns.host_address != self.shared_address:
                    _ip("-n", ns.name, "route", "add", f"{self.shared_address}/32", "via", ns.host_address)
        except (subprocess.CalledProcessError, OSError) as exc:
            self.__exit__(None, None, None)
            detail = getattr(exc, "stderr", "") or str(exc)
            raise NetnsUnavailable(f"cannot make a network namespace: {detail.strip()}") from exc
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for ns in reversed(self._made):
            _remove(ns.name, ns.host_link)
        names = {ns.name for ns in self._made}
        self._made = []
        try:
            self.leftovers = sorted(names & set(existing()))
        except (subprocess.CalledProcessError, NetnsUnavailable):
            self.leftovers = []
