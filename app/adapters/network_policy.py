"""The network policy: what an app or a build may reach, enforced by the host's firewall.

Apps run on a bridge network of their deployment's own, carved from CONTAINER_NETWORK_POOL;
BuildKit's RUN steps run on the default bridge (docker0). Docker lets both reach every port the
host listens on (traffic to any address of the host goes through INPUT), the cloud metadata
address and the LAN (forwarded traffic, through FORWARD). Slipway narrows that with chains of
its own, refilled in one `iptables-restore` transaction at every `slipway up`:

- `SLIPWAY-FORWARD`, jumped to first from Docker's documented `DOCKER-USER` chain: traffic that
  stays on its bridge (a replica and its Redis) and the allowed destinations go on to Docker's
  own rules (RETURN, never ACCEPT: Docker's isolation between bridges still applies); private,
  link-local and shared ranges, other deployments' networks and docker0 are refused.
- `SLIPWAY-INPUT`, jumped to first from `INPUT`: replies (the router and the health probe dial
  replicas from the host) and the allowed host ports go on; every other port of every address of
  the host is refused.
- `SLIPWAY-REFUSE`: REJECT (a TCP reset, or ICMP port unreachable), so a client fails at once
  instead of waiting out a timeout.

Several platforms may share a machine (and its docker0, and a pool): each tags its rules with
its own id (a comment), and applying keeps the other platforms' rules, so the machine allows the
union of what its platforms allow, all allowances before all refusals. Applying reads the chains
and writes them back, so it holds a lock of the machine's (`POLICY_LOCK`) from the reading to
the writing: two platforms starting or leaving at once would otherwise each write back what
they read before the other wrote, and one platform's allowances (its apps' database) would go.

The rules are data, rendered by a pure function (`render`); `Iptables` only applies them, with
argument lists. IPv4 only: the engine runs without IPv6 here, and a container on an IPv4-only
network has no IPv6 address at all (not even link-local), so it cannot send any.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import ipaddress
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from app.adapters.default_bridge import DefaultBridge, default_bridge
from app.kernel.addresses import Destination, parse_destination
from builders.errors import EngineError
from manifests.errors import SlipwayError

if TYPE_CHECKING:
    from app.kernel.settings import Settings

log = logging.getLogger(__name__)

CHAIN_PREFIX = "SLIPWAY"
FORWARD_HOOK = "DOCKER-USER"
"""Docker's chain for the operator's rules: FORWARD jumps to it before Docker's own rules, and
the engine never flushes it (not even on restart)."""
INPUT_HOOK = "INPUT"
REFUSED_RANGES = tuple(
    ipaddress.IPv4Network(cidr)
    for cidr in (
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",  # carrier-grade NAT, and some clouds' internal services
        "169.254.0.0/16",  # link-local: the cloud metadata address 169.254.169.254
    )
)
"""Destinations refused to apps and builds unless allowed: the LAN and the metadata service."""
DNS_PORT = 53
DATABASE_PORT = 5432
"""Port of the cluster when POSTGRES_ADMIN_URL names none."""
RESOLV_CONFS = (Path("/etc/resolv.conf"), Path("/run/systemd/resolve/resolv.conf"))
"""Where Docker takes the upstream DNS servers from (the second when the first names only
systemd-resolved's 127.0.0.53): a container's queries reach them from the container's own
address (forwarded by the embedded DNS of user-defined networks, or sent directly on docker0),
so a resolver on the LAN must stay reachable on port 53. Servers set by dockerd's own `dns`
option are not read: an operator who sets one on the LAN adds it to NETWORK_POLICY_ALLOW."""
TAG_PREFIX = "slipway:"
"""The comment on each rule a platform adds: `slipway:<platform id>`."""
TAGGED = re.compile(r'--comment "?(slipway:[^"\s]*)"?')
IPTABLES_TIMEOUT_SECONDS = 30.0
XTABLES_WAIT_SECONDS = "10"
"""How long iptables waits for the lock another firewall user (dockerd) holds."""
LOCK_NAME = "slipway-network-policy.lock"


def default_policy_lock() -> Path:
    """Where every platform of the machine takes the policy's lock: /run beside iptables' own
    xtables.lock (writable by root, who applies the policy), else the temporary directory (a
    firewall changed with CAP_NET_ADMIN alone)."""
    run = Path("/run")
    if os.access(run, os.W_OK):
        return run / LOCK_NAME
    return Path(tempfile.gettempdir()) / LOCK_NAME


OFF_HINT = (
    "set SLIPWAY_NETWORK_POLICY=false to run without it (apps and builds then reach every port "
    "of this host, 169.254.169.254 and the LAN)"
)

Rule = list[str]
"""One rule as `iptables -A CHAIN` arguments, without the `-A CHAIN`."""
Run = Callable[[Sequence[str], str | None], str]
"""Runs argv with the given standard input; returns standard output. Raises OSError or
subprocess.CalledProcessError."""


class NetworkPolicyError(SlipwayError):
    """The policy could not be applied; the message names what is missing."""


@dataclass(frozen=True)
class Sources:
    """Containers with the same rights: every address of `subnet`."""

    name: str
    """What they are (apps, builds), for logs."""
    subnet: ipaddress.IPv4Network
    allowed: tuple[Destination, ...]
    """Reached despite the refusals, on the host or off it."""


@dataclass(frozen=True)
class Policy:
    sources: tuple[Sources, ...]
    refused: tuple[ipaddress.IPv4Network, ...] = REFUSED_RANGES
    """Refused to every source (besides every port of the host, and the sources' subnets)."""


@dataclass(frozen=True)
class Chains:
    """The names of the policy's chains. Tests take a prefix of their own, so their rules stay
    apart from a running platform's."""

    prefix: str = CHAIN_PREFIX

    @property
    def forward(self) -> str:
        return f"{self.prefix}-FORWARD"

    @property
    def input(self) -> str:
        return f"{self.prefix}-INPUT"

    @property
    def refuse(self) -> str:
        return f"{self.prefix}-REFUSE"

    @property
    def hooks(self) -> tuple[tuple[str, str], ...]:
        """(built-in or Docker's chain, our chain it jumps to first)."""
        return ((FORWARD_HOOK, self.forward), (INPUT_HOOK, self.input))


# -- the rules, as data -----------------------------------------------------------------------


def render(
    policy: Policy, chains: Chains = Chains(), tag: str = TAG_PREFIX
) -> dict[str, list[Rule]]:
    """Every rule of every chain of the policy, in order, each but the first of a chain marked
    with `tag` (the platform's). Nothing is ever ACCEPTed: what is allowed goes back (RETURN) to
    Docker's and the host's own rules, which still decide."""
    replies = ["-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "RETURN"]
    subnets = tuple(source.subnet for source in policy.sources)
    forward: list[Rule] = [list(replies)]
    incoming: list[Rule] = [list(replies)]
    for source in policy.sources:
        own = ["-s", str(source.subnet)]
        forward.append([*own, "-m", "physdev", "--physdev-is-bridged", "-j", "RETURN"])
        for destination in source.allowed:
            for match in _destination_matches(destination):
                forward.append([*own, *match, "-j", "RETURN"])
                incoming.append([*own, *match, "-j", "RETURN"])
        for refused in dict.fromkeys((*policy.refused, *subnets)):
            forward.append([*own, "-d", str(refused), "-j", chains.refuse])
        incoming.append([*own, "-j", chains.refuse])
    refuse: list[Rule] = [
        ["-p", "tcp", "-j", "REJECT", "--reject-with", "tcp-reset"],
        ["-j", "REJECT", "--reject-with", "icmp-port-unreachable"],
    ]
    mark = ["-m", "comment", "--comment", tag]
    return {
        chains.refuse: refuse,
        chains.forward: [forward[0], *([*rule[:-2], *mark, *rule[-2:]] for rule in forward[1:])],
        chains.input: [incoming[0], *([*rule[:-2], *mark, *rule[-2:]] for rule in incoming[1:])],
    }


def _destination_matches(destination: Destination) -> list[Rule]:
    to = ["-d", str(destination.network)]
    if destination.port is None:
        return [to]
    return [[*to, "-p", p, "--dport", str(destination.port)] for p in destination.protocols]


def rule_lines(rules: dict[str, list[Rule]]) -> dict[str, list[str]]:
    """The rules as `iptables -S` and `iptables-restore` write them (`-A CHAIN ...`)."""
    return {
        chain: [" ".join(["-A", chain, *rule]) for rule in listed]
        for chain, listed in rules.items()
    }


def merged(ours: list[str], listed: Iterable[str], tag: str) -> list[str]:
    """A chain's rules: ours, with the rules other platforms tagged (`listed`, as `iptables -S`
    shows the chain now), allowances before refusals; untagged and our old rules go."""
    others = [line for line in listed if (m := TAGGED.search(line)) and m.group(1) != tag]
    head, rest = ours[:1], [*ours[1:], *others]
    returns = [line for line in rest if line.endswith(" -j RETURN")]
    return [*head, *dict.fromkeys([*returns, *(line for line in rest if line not in returns)])]


def restore_input(lines: dict[str, list[str]]) -> str:
    """`iptables-restore --noflush` input that empties and refills the chains in one commit
    (declaring a chain flushes it; the hooks and every other chain are left alone)."""
    declared = ["*filter", *(f":{chain} - [0:0]" for chain in lines)]
    return "\n".join(
        [*declared, *(line for chain in lines.values() for line in chain), "COMMIT", ""]
    )


def platform_policy(
    *,
    pool: ipaddress.IPv4Network,
    bridge: ipaddress.IPv4Network | None,
    gateway: ipaddress.IPv4Address,
    database_port: int,
    build_host_ports: Iterable[int] = (),
    allow: Iterable[Destination] = (),
    nameservers: Iterable[ipaddress.IPv4Address] = (),
) -> Policy:
    """Slipway's policy: apps (the pool) reach the database cluster's port on the gateway;
    builds (`bridge`, docker0; None leaves it alone) reach `build_host_ports` there; both reach
    the DNS servers, the operator's allow-list and the internet."""
    shared = (
        *(
            Destination(ipaddress.IPv4Network(server), DNS_PORT)
            for server in dict.fromkeys(nameservers)
        ),
        *allow,
    )
    host = ipaddress.IPv4Network(gateway)
    apps = Sources("apps", pool, (Destination(host, database_port, ("tcp",)), *shared))
    if bridge is None:
        return Policy((apps,))
    builds_host = tuple(
        Destination(host, port, ("tcp",)) for port in dict.fromkeys(build_host_ports)
    )
    return Policy((apps, Sources("builds", bridge, (*builds_host, *shared))))


def nameservers(resolv_conf: str) -> list[ipaddress.IPv4Address]:
    """The IPv4 `nameserver`s of a resolv.conf, loopback ones left out (Docker replaces those
    with public servers)."""
    found = []
    for line in resolv_conf.splitlines():
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            try:
                address = ipaddress.ip_address(words[1])
            except ValueError:
                continue
            if isinstance(address, ipaddress.IPv4Address) and not address.is_loopback:
                found.append(address)
    return found


# -- applying them ----------------------------------------------------------------------------


def run_command(argv: Sequence[str], stdin: str | None = None) -> str:
    completed = subprocess.run(
        list(argv),
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
        timeout=IPTABLES_TIMEOUT_SECONDS,
    )
    return completed.stdout


class Iptables:
    """The host's firewall through the `iptables` command of the backend Docker uses."""

    def __init__(
        self, binary: str = "iptables", run: Run = run_command, lock: Path | None = None
    ) -> None:
        self.binary = binary
        self.restore_binary = f"{binary}-restore"
        self._run = run
        self._lock_path = lock

    @contextlib.contextmanager
    def _machine_lock(self) -> Iterator[None]:
        """Held while the chains are read and written back (`apply`, `remove`): one platform
        of the machine at a time, so none writes back a listing another has since changed."""
        path = self._lock_path or default_policy_lock()
        try:
            handle = path.open("a")
        except OSError as exc:
            raise NetworkPolicyError(
                f"the network policy's lock {path} could not be opened ({exc}); {OFF_HINT}"
            ) from exc
        with handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def apply(
        self, rules: dict[str, list[Rule]], chains: Chains = Chains(), tag: str = TAG_PREFIX
    ) -> None:
        """Refill the chains (keeping other platforms' rules), then jump to them first from the
        hooks unless they already do. Running it again changes nothing; after a flush or a lost
        jump it restores them."""
        for command in (self.binary, self.restore_binary):
            if shutil.which(command) is None:
                raise NetworkPolicyError(
                    f"the network policy needs `{command}`, which is not installed (or not on "
                    f"PATH): install iptables, or {OFF_HINT}"
                )
        try:
            self._run([self.binary, "-w", XTABLES_WAIT_SECONDS, "-S", FORWARD_HOOK], None)
        except subprocess.CalledProcessError as exc:
            if "root" in exc.stderr or "ermission" in exc.stderr:
                raise self._error(exc.cmd, exc) from exc
            raise NetworkPolicyError(
                f"the network policy hooks into Docker's {FORWARD_HOOK} chain, which "
                f"`{self.binary}` does not show ({exc.stderr.strip()}): dockerd runs with "
                "--iptables=false, or uses the other iptables backend (set "
                "SLIPWAY_NETWORK_POLICY_IPTABLES to iptables-legacy or iptables-nft, the one "
                f"that lists {FORWARD_HOOK}); or {OFF_HINT}"
            ) from exc
        except (OSError, subprocess.SubprocessError) as exc:
            raise self._error([self.binary, "-S", FORWARD_HOOK], exc) from exc
        with self._machine_lock():
            lines = rule_lines(rules)
            for chain in (chains.forward, chains.input):
                listed = self.listing(chain) if self._succeeds("-S", chain) else []
                lines[chain] = merged(lines.get(chain, []), listed, tag)
            self._call(
                [self.restore_binary, "-w", XTABLES_WAIT_SECONDS, "--noflush"],
                restore_input(lines),
            )
            for hook, chain in chains.hooks:
                if not self._succeeds("-C", hook, "-j", chain):
                    self._call(
                        [self.binary, "-w", XTABLES_WAIT_SECONDS, "-I", hook, "1", "-j", chain]
                    )

    def forget(self, tag: str, chains: Chains = Chains()) -> None:
        """Take one platform's rules away, keeping the others' (a test's platform, at its end:
        a platform that stays runs with the same tag at every start, and adds nothing)."""
        if self._succeeds("-S", chains.forward):
            self.apply(render(Policy(()), chains, tag), chains, tag)

    def remove(self, chains: Chains = Chains()) -> None:
        """Take the policy away: the jumps, then the chains. Missing pieces are skipped."""
        with self._machine_lock():
            for hook, chain in chains.hooks:
                while self._succeeds("-C", hook, "-j", chain):
                    self._call([self.binary, "-w", XTABLES_WAIT_SECONDS, "-D", hook, "-j", chain])
            for chain in (chains.forward, chains.input, chains.refuse):
                if self._succeeds("-F", chain):
                    self._call([self.binary, "-w", XTABLES_WAIT_SECONDS, "-X", chain])

    def listing(self, chain: str) -> list[str]:
        """`iptables -S chain`: the chain's rules as the firewall holds them."""
        return self._call([self.binary, "-w", XTABLES_WAIT_SECONDS, "-S", chain]).splitlines()

    def _succeeds(self, *argv: str) -> bool:
        try:
            self._run([self.binary, "-w", XTABLES_WAIT_SECONDS, *argv], None)
        except subprocess.CalledProcessError:
            return False
        except (OSError, subprocess.SubprocessError) as exc:
            raise self._error(argv, exc) from exc
        return True

    def _call(self, argv: Sequence[str], stdin: str | None = None) -> str:
        try:
            return self._run(argv, stdin)
        except (OSError, subprocess.SubprocessError) as exc:
            raise self._error(argv, exc) from exc

    def _error(self, argv: Sequence[str], exc: Exception) -> NetworkPolicyError:
        detail = exc.stderr.strip() if isinstance(exc, subprocess.CalledProcessError) else exc
        return NetworkPolicyError(
            f"the network policy could not be applied (`{' '.join(argv[:4])}` …: {detail}); "
            f"it needs root (or CAP_NET_ADMIN) and iptables, or {OFF_HINT}"
        )


# -- at platform start ------------------------------------------------------------------------


def policy_bridge(docker_binary: str) -> DefaultBridge:
    """docker0, or the error that says the policy cannot be applied without it."""
    try:
        return default_bridge(docker_binary)
    except EngineError as exc:
        raise NetworkPolicyError(
            f"the network policy needs the default Docker bridge's subnet, which "
            f"`{docker_binary} network inspect bridge` did not give ({exc}); is dockerd running? "
            f"Or {OFF_HINT}"
        ) from exc


def platform_tag(data_dir: Path) -> str:
    """The platform's mark on its rules: the same at every start, another platform's differs."""
    return TAG_PREFIX + hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:12]


def enforce_network_policy(
    settings: Settings,
    docker_binary: str,
    database_port: int | None,
    build_host_ports: Iterable[int] = (),
) -> None:
    """Apply Slipway's policy at `slipway up` (the supervisor's one call), or say it is off.

    `database_port`: the embedded cluster's; None reads it from POSTGRES_ADMIN_URL.
    `build_host_ports`: ports of services the platform runs for builds on the gateway (the
    package-index pass-through), besides NETWORK_POLICY_BUILD_HOST_PORTS.
    """
    if not settings.network_policy:
        log.warning(
            "network policy off (SLIPWAY_NETWORK_POLICY=false): apps and builds reach every "
            "port of this host, 169.254.169.254 and the LAN"
        )
        return
    bridge = policy_bridge(docker_binary)
    if database_port is None:
        database_port = urlsplit(settings.postgres_admin_url or "").port or DATABASE_PORT
    servers = []
    for resolv_conf in RESOLV_CONFS:
        with contextlib.suppress(OSError):
            servers += nameservers(resolv_conf.read_text())
    policy = platform_policy(
        pool=settings.container_network_pool,
        bridge=bridge.subnet if settings.network_policy_builds else None,
        gateway=bridge.gateway,
        database_port=database_port,
        build_host_ports=(*build_host_ports, *settings.network_policy_build_host_ports),
        allow=[parse_destination(entry) for entry in settings.network_policy_allow],
        nameservers=servers,
    )
    tag = platform_tag(settings.data_dir)
    Iptables(settings.network_policy_iptables).apply(render(policy, tag=tag), tag=tag)
    if bridge.ipv6:
        log.warning(
            "the default bridge has IPv6 on: the network policy filters IPv4 only, so builds "
            "and other containers on docker0 reach IPv6 destinations unfiltered"
        )
    log.info(
        "network policy applied",
        extra={
            "tag": tag,
            "sources": {s.name: str(s.subnet) for s in policy.sources},
            "allowed": {s.name: [str(d) for d in s.allowed] for s in policy.sources},
        },
    )
