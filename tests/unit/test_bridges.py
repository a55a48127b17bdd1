"""Quick ACKs on a deployment network's route: the change keeps the route, failures only warn."""

from __future__ import annotations

import ipaddress
import json
import logging
import subprocess
from collections.abc import Sequence

import pytest

from app.adapters.bridges import enable_quick_acks, quick_ack_arguments

SUBNET = ipaddress.IPv4Network("10.213.0.0/27")
ROUTE: dict[str, object] = {
    "dst": "10.213.0.0/27",
    "dev": "br-0123456789ab",
    "protocol": "kernel",
    "scope": "link",
    "prefsrc": "10.213.0.1",
    "flags": ["linkdown"],
}


def test_the_change_keeps_the_route_and_adds_quick_acks() -> None:
    assert quick_ack_arguments(ROUTE) == [
        "route", "change", "10.213.0.0/27", "dev", "br-0123456789ab",
        "proto", "kernel", "scope", "link", "src", "10.213.0.1", "quickack", "1",
    ]  # fmt: skip


def test_a_route_that_has_them_is_left_alone() -> None:
    assert quick_ack_arguments({**ROUTE, "metrics": [{"quickack": 1}]}) is None


class Ip:
    def __init__(self, routes: list[dict[str, object]], fail_change: bool = False) -> None:
        self.routes = routes
        self.fail_change = fail_change
        self.changes: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> str:
        if argv[:2] == ["-json", "route"]:
            return json.dumps(self.routes)
        if self.fail_change:
            raise subprocess.CalledProcessError(
                2, ["ip", *argv], stderr="RTNETLINK answers: Operation not permitted\n"
            )
        self.changes.append(list(argv))
        return ""


def test_quick_acks_are_enabled_once() -> None:
    ip = Ip([ROUTE])
    assert enable_quick_acks(SUBNET, ip)
    assert [argv[-2:] for argv in ip.changes] == [["quickack", "1"]]

    already = Ip([{**ROUTE, "metrics": [{"quickack": 1}]}])
    assert enable_quick_acks(SUBNET, already)
    assert already.changes == []


def test_without_the_right_to_change_routes_it_warns_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="app.adapters.bridges")
    assert not enable_quick_acks(SUBNET, Ip([ROUTE], fail_change=True))
    [record] = caplog.records
    assert "40 ms" in record.getMessage()
    assert record.__dict__["error"] == "RTNETLINK answers: Operation not permitted"


def test_without_ip_or_a_route_it_warns_and_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="app.adapters.bridges")

    def missing(argv: Sequence[str]) -> str:
        raise FileNotFoundError(2, "No such file or directory", "ip")

    assert not enable_quick_acks(SUBNET, missing)
    assert not enable_quick_acks(SUBNET, Ip([]))
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "quick ACKs not enabled on the deployment network",
        "no route to the deployment network",
    ]
