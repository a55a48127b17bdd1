"""The network policy as data: what the rules say, the allow-list, and what the adapter refuses
to half-do. The firewall itself is tried in tests/integration/test_network_policy.py."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from app.adapters.network_policy import (
    Chains,
    Iptables,
    NetworkPolicyError,
    merged,
    nameservers,
    platform_policy,
    platform_tag,
    render,
    restore_input,
    rule_lines,
)
from app.kernel.addresses import Destination, parse_destination
from app.kernel.settings import SettingsError, load_settings

POOL = ipaddress.IPv4Network("172.16.0.0/16")
DOCKER0 = ipaddress.IPv4Network("172.17.0.0/16")
GATEWAY = ipaddress.IPv4Address("172.17.0.1")


def policy_rules() -> dict[str, list[list[str]]]:
    return render(
        platform_policy(
            pool=POOL,
            bridge=DOCKER0,
            gateway=GATEWAY,
            database_port=5433,
            build_host_ports=(3141,),
            allow=[parse_destination("10.0.5.0/24")],
            nameservers=[ipaddress.IPv4Address("10.255.255.53")],
        )
    )


def lines(rules: list[list[str]]) -> list[str]:
    """The rules without the platform's mark, which every one but the first carries."""
    mark = " -m comment --comment slipway:"
    assert all(mark in " ".join(rule) for rule in rules[1:])
    return [" ".join(rule).replace(mark, "") for rule in rules]


def test_nothing_is_accepted_or_dropped_only_returned_or_rejected() -> None:
    """ACCEPT in DOCKER-USER would skip Docker's isolation of bridges; DROP would leave a
    client waiting out its timeout."""
    for rules in policy_rules().values():
        for rule in rules:
            target = rule[rule.index("-j") + 1]
            assert target in {"RETURN", "REJECT", "SLIPWAY-REFUSE"}, rule


def test_apps_reach_the_database_port_and_builds_the_given_port_on_the_gateway() -> None:
    incoming = lines(policy_rules()["SLIPWAY-INPUT"])

    assert incoming[0] == "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
    apps = [line for line in incoming if line.startswith("-s 172.16.0.0/16")]
    builds = [line for line in incoming if line.startswith("-s 172.17.0.0/16")]
    assert apps[0] == "-s 172.16.0.0/16 -d 172.17.0.1/32 -p tcp --dport 5433 -j RETURN"
    assert builds[0] == "-s 172.17.0.0/16 -d 172.17.0.1/32 -p tcp --dport 3141 -j RETURN"
    assert not any("3141" in line for line in apps)
    assert not any("5433" in line for line in builds)
    # ... and every other port of every address of the host is refused, last.
    assert apps[-1] == builds[-1].replace("172.17.0.0/16", "172.16.0.0/16")
    assert apps[-1] == "-s 172.16.0.0/16 -j SLIPWAY-REFUSE"


def test_the_lan_and_the_metadata_address_are_refused_after_what_is_allowed() -> None:
    forward = lines(policy_rules()["SLIPWAY-FORWARD"])
    apps = [line for line in forward if line.startswith("-s 172.16.0.0/16")]

    assert apps[0] == "-s 172.16.0.0/16 -m physdev --physdev-is-bridged -j RETURN"
    allowed = apps.index("-s 172.16.0.0/16 -d 10.0.5.0/24 -j RETURN")
    dns = apps.index("-s 172.16.0.0/16 -d 10.255.255.53/32 -p udp --dport 53 -j RETURN")
    refused = [line.split()[3] for line in apps if line.endswith("SLIPWAY-REFUSE")]
    assert refused == [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "100.64.0.0/10",
        "169.254.0.0/16",
        "172.16.0.0/16",
        "172.17.0.0/16",
    ]
    assert max(allowed, dns) < apps.index("-s 172.16.0.0/16 -d 10.0.0.0/8 -j SLIPWAY-REFUSE")


def test_without_the_builds_docker0_is_left_alone() -> None:
    rules = render(platform_policy(pool=POOL, bridge=None, gateway=GATEWAY, database_port=5432))

    assert not any(
        "-s 172.17.0.0/16" in " ".join(rule) for chain in rules.values() for rule in chain
    )


def test_the_restore_input_refills_each_chain_in_one_commit() -> None:
    text = restore_input(rule_lines(policy_rules()))

    assert text.startswith(
        "*filter\n:SLIPWAY-REFUSE - [0:0]\n:SLIPWAY-FORWARD - [0:0]\n:SLIPWAY-INPUT - [0:0]\n"
    )
    assert text.endswith("\nCOMMIT\n")
    assert "-A SLIPWAY-REFUSE -p tcp -j REJECT --reject-with tcp-reset\n" in text
    assert "DOCKER-USER" not in text and ":INPUT" not in text  # the hooks are left alone


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("10.0.5.0/24", Destination(ipaddress.IPv4Network("10.0.5.0/24"))),
        ("192.168.1.10", Destination(ipaddress.IPv4Network("192.168.1.10/32"))),
        ("192.168.1.10:5432", Destination(ipaddress.IPv4Network("192.168.1.10/32"), 5432)),
    ],
)
def test_an_allow_list_entry_is_a_network_with_a_port_or_not(
    entry: str, expected: Destination
) -> None:
    assert parse_destination(entry) == expected


@pytest.mark.parametrize(
    "entry", ["10.0.5.1/24", "example.com", "10.0.0.1:http", "10.0.0.1:70000", "fc00::/7"]
)
def test_a_bad_allow_list_entry_is_refused(entry: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(entry))):
        parse_destination(entry)


def test_nameservers_besides_loopback_are_read_from_resolv_conf() -> None:
    text = "# comment\nnameserver 10.255.255.53\nnameserver 127.0.0.53\nnameserver ::1\nsearch x\n"

    assert nameservers(text) == [ipaddress.IPv4Address("10.255.255.53")]


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    for name in list(os.environ):
        if name.upper().startswith("SLIPWAY_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_the_policy_is_on_by_default_and_its_lists_are_comma_separated(
    env: pytest.MonkeyPatch,
) -> None:
    assert load_settings().network_policy is True
    env.setenv("SLIPWAY_NETWORK_POLICY_ALLOW", "10.0.5.0/24, 192.168.1.10:5432")
    env.setenv("SLIPWAY_NETWORK_POLICY_BUILD_HOST_PORTS", "3141,8081")

    settings = load_settings()

    assert settings.network_policy_allow == ("10.0.5.0/24", "192.168.1.10/32:5432")
    assert settings.network_policy_build_host_ports == (3141, 8081)


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("SLIPWAY_NETWORK_POLICY_ALLOW", "10.0.5.1/24", "'10.0.5.1/24': not an IPv4"),
        ("SLIPWAY_NETWORK_POLICY_BUILD_HOST_PORTS", "0", "from 1 to 65535"),
    ],
)
def test_a_bad_policy_setting_is_named(
    env: pytest.MonkeyPatch, variable: str, value: str, says: str
) -> None:
    env.setenv(variable, value)

    with pytest.raises(SettingsError) as caught:
        load_settings()

    assert variable in str(caught.value) and says in str(caught.value)


def test_without_iptables_the_error_names_it_and_the_way_out() -> None:
    with pytest.raises(NetworkPolicyError) as caught:
        Iptables("iptables-not-installed-here").apply(policy_rules())

    assert "`iptables-not-installed-here`" in str(caught.value)
    assert "SLIPWAY_NETWORK_POLICY=false" in str(caught.value)


def test_without_dockers_chain_nothing_is_applied(monkeypatch: pytest.MonkeyPatch) -> None:
    """dockerd with --iptables=false, or on the other backend: no half-applied policy."""
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/sbin/{name}")
    calls: list[Sequence[str]] = []

    def run(argv: Sequence[str], stdin: str | None) -> str:
        calls.append(argv)
        raise subprocess.CalledProcessError(1, argv, "", "No chain/target/match by that name.")

    with pytest.raises(NetworkPolicyError, match=r"DOCKER-USER chain.*iptables-legacy"):
        Iptables(run=run).apply(policy_rules(), Chains())

    assert len(calls) == 1 and calls[0][-2:] == ["-S", "DOCKER-USER"]


def test_platforms_sharing_the_machine_keep_each_others_rules() -> None:
    """A second platform (another data dir, another database port) must not take the first's
    database away from its apps: the chains hold the union, allowances before refusals."""
    first, second = platform_tag(Path("/srv/a")), platform_tag(Path("/srv/b"))
    assert first != second and first == platform_tag(Path("/srv/a"))

    def chain(tag: str, port: int) -> list[str]:
        policy = platform_policy(pool=POOL, bridge=None, gateway=GATEWAY, database_port=port)
        return rule_lines(render(policy, tag=tag))["SLIPWAY-INPUT"]

    listed_after_first = ["-N SLIPWAY-INPUT", *chain(first, 5001), "-A SLIPWAY-INPUT -j DROP"]
    both = merged(chain(second, 5002), listed_after_first, second)

    assert both[0] == "-A SLIPWAY-INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN"
    ports = [i for i, line in enumerate(both) if "--dport 500" in line]
    refusals = [i for i, line in enumerate(both) if line.endswith("-j SLIPWAY-REFUSE")]
    assert len(ports) == 2 and len(refusals) == 2 and max(ports) < min(refusals)
    assert "-A SLIPWAY-INPUT -j DROP" not in both  # untagged: not a platform's
    # The first platform restarting replaces its own rules, and keeps the second's.
    again = merged(chain(first, 5001), both, first)
    assert sorted(again) == sorted(both)


def test_without_root_the_error_says_so_not_that_dockers_chain_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/sbin/{name}")

    def run(argv: Sequence[str], stdin: str | None) -> str:
        denied = "iptables v1.8.9 (nf_tables): Permission denied (you must be root)"
        raise subprocess.CalledProcessError(4, argv, "", denied)

    with pytest.raises(NetworkPolicyError) as caught:
        Iptables(run=run).apply(policy_rules())

    assert "you must be root" in str(caught.value) and "needs root" in str(caught.value)
    assert "DOCKER-USER chain" not in str(caught.value)


class SharedFirewall:
    """The machine's filter table as two platforms' `iptables` see it, with the moment between
    a platform's reading a chain and its writing it back widened: the first to read waits
    (briefly) for the other to read too."""

    def __init__(self) -> None:
        self.chains: dict[str, list[str]] = {}
        self.hooks: set[tuple[str, str]] = set()
        self._both_read = threading.Barrier(2, timeout=0.5)
        self._lock = threading.Lock()

    def run(self, argv: Sequence[str], stdin: str | None) -> str:
        if argv[0].endswith("-restore"):
            with self._lock:
                for line in (stdin or "").splitlines():
                    if line.startswith(":"):
                        self.chains[line[1:].split()[0]] = []
                    elif line.startswith("-A "):
                        self.chains[line.split()[1]].append(line)
            return ""
        command, chain, *rest = argv[3:]  # after `iptables -w 10`
        if command == "-S" and chain == "DOCKER-USER":
            return ""
        if command == "-S" and chain in self.chains:
            listed = "\n".join([f"-N {chain}", *self.chains[chain]])
            if chain == "SLIPWAY-INPUT":  # the last read before the write
                # Alone past the timeout: the other platform waits for this one to write.
                with contextlib.suppress(threading.BrokenBarrierError):
                    self._both_read.wait()
            return listed
        if command == "-C" and (chain, rest[-1]) in self.hooks:
            return ""
        if command == "-I":
            self.hooks.add((chain, rest[-1]))
            return ""
        raise subprocess.CalledProcessError(1, argv, "", "No chain/target/match by that name.")


def test_two_platforms_starting_at_once_both_keep_their_rules(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Each reads the chains and writes them back with its own rules: the one that writes last
    must have read what the other wrote (the e2e tier starts platforms on two workers at once;
    the lost one's apps would be refused their database)."""
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/sbin/{name}")
    firewall = SharedFirewall()
    firewall.chains = {"SLIPWAY-FORWARD": [], "SLIPWAY-INPUT": [], "SLIPWAY-REFUSE": []}
    tags = [platform_tag(Path("/srv/a")), platform_tag(Path("/srv/b"))]
    ports = {tags[0]: 5001, tags[1]: 5002}
    failures: list[BaseException] = []

    def start(tag: str) -> None:
        policy = platform_policy(pool=POOL, bridge=None, gateway=GATEWAY, database_port=ports[tag])
        try:
            Iptables(run=firewall.run, lock=tmp_path / "policy.lock").apply(
                render(policy, tag=tag), tag=tag
            )
        except BaseException as exc:  # reported below
            failures.append(exc)

    starts = [threading.Thread(target=start, args=(tag,)) for tag in tags]
    for thread in starts:
        thread.start()
    for thread in starts:
        thread.join(timeout=10)

    assert not failures
    for chain in ("SLIPWAY-FORWARD", "SLIPWAY-INPUT"):
        rules = "\n".join(firewall.chains[chain])
        for tag, port in ports.items():
            assert f"--dport {port} -m comment --comment {tag} -j RETURN" in rules, rules
    assert firewall.hooks == {("DOCKER-USER", "SLIPWAY-FORWARD"), ("INPUT", "SLIPWAY-INPUT")}
