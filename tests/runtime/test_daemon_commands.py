"""The control protocol's registry, pure: typed arguments checked at the boundary, one-line
refusals, and commands registered by the features that own them."""

from dataclasses import dataclass

import pytest

from netsim.errors import NetsimError
from netsim.model import bounds
from netsim.runtime import commands


class FakeController:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def known(self, kind, value):
        if value not in {"vm": ["web1"], "node": ["n1"], "availability set": ["web"]}[kind]:
            raise bounds.InvalidValue(f"no {kind} {value!r} in datacenter 'x'")
        return value

    def node_fail(self, node):
        self.calls.append(("node_fail", node))

    def cancel_event(self, event_id):
        self.calls.append(("cancel", event_id))


class Ctx:
    def __init__(self) -> None:
        self.controller, self.linklocal, self.dc = FakeController(), None, None
        self.server = type("S", (), {"nodes": ["n1"]})()

    def known(self, kind, value):
        return self.controller.known(kind, value)


def refused(request) -> str:
    with pytest.raises(commands.CommandError) as info:
        commands.dispatch(Ctx(), request)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, NetsimError)
    return message


def test_every_feature_registers_its_commands():
    names = set(commands.registry())
    assert {"ping", "link", "linklocal", "event_add", "events", "approve", "cancel", "walk_start",
            "snapshot", "node_fail", "node_recover"} <= names
    assert commands.REGISTRY["link"].handler.__module__ == "netsim.runtime.claims"
    assert commands.REGISTRY["walk_start"].handler.__module__ == "netsim.runtime.maintenance_commands"


def test_a_valid_request_reaches_its_handler_typed():
    ctx = Ctx()
    assert commands.dispatch(ctx, {"command": "node_fail", "node": "n1"}) == {}
    assert commands.dispatch(ctx, {"command": "cancel", "id": "E-1"}) == {}
    assert ctx.controller.calls == [("node_fail", "n1"), ("cancel", "E-1")]
    pong = commands.dispatch(ctx, {"command": "ping"})
    assert pong["nodes"] == ["n1"] and "event_add" in pong["commands"]


@pytest.mark.parametrize("request_, words", [
    ([1, 2], "one JSON object per line"),
    ({"command": "nap"}, "unknown command 'nap'"),
    ({}, "unknown command None"),
    ({"command": "ping", "x": 1}, "ping takes no argument 'x' (it takes: no argument)"),
    ({"command": "node_fail"}, "node_fail needs the argument 'node'"),
    ({"command": "node_fail", "node": 1}, "no node 1"),
    ({"command": "link", "vm": "web1", "up": "false"}, "'up' must be true or false"),
    ({"command": "link", "vm": "web1", "up": True}, "link-local claiming is off"),
    ({"command": "cancel", "id": {"x": 1}}, "an event id is a string of at most 200 characters (see netsim events), not"),
    ({"command": "walk_start", "avset": "web", "notice": "900"}, "notice (--notice) must be a number"),
    ({"command": "walk_start", "avset": "web", "downtime": float("inf")}, "downtime (--downtime) must be"),
    ({"command": "event_add", "vm": "web1", "in": True}, "notice (--in) must be a number"),
    ({"command": "event_add", "vm": "web1", "duration": -3}, "duration (--duration) must be an integer"),
    ({"command": "event_add", "vm": "web1", "description": 5}, "the event description is a string"),
])
def test_bad_requests_are_refused_with_one_line(request_, words):
    assert words in refused(request_)


def test_decode_refuses_what_is_not_json():
    for line in (b"not json\n", b"[" * 60000 + b"\n"):
        with pytest.raises(commands.CommandError, match="one JSON object per line"):
            commands.decode(line)
    assert commands.decode(b'{"command": "ping"}\n') == {"command": "ping"}


def test_a_feature_registers_a_command_with_typed_arguments_and_a_wire_name():
    @dataclass(frozen=True)
    class Toy:
        when: float = commands.number(bounds.NOTICE_S, "the time", default=None, wire="in")
        label: str = commands.text(default="x", limit=3)

    @commands.command("toy_for_test", Toy)
    def toy(ctx, a: Toy) -> dict:
        return {"when": a.when, "label": a.label}

    try:
        assert commands.dispatch(Ctx(), {"command": "toy_for_test", "in": 5}) == {"when": 5.0, "label": "x"}
        assert "is a string of at most 3 characters" in refused({"command": "toy_for_test", "label": "long"})
        assert "takes no argument 'when' (it takes: in, label)" in refused({"command": "toy_for_test", "when": 1})
        with pytest.raises(ValueError, match="registered twice"):
            commands.command("toy_for_test", Toy)(lambda ctx, a: {})
    finally:
        del commands.REGISTRY["toy_for_test"]


def test_refusal_and_encode_are_one_json_line():
    answer = commands.refusal(commands.CommandError("two\nlines"))
    assert answer == {"ok": False, "error": "two lines"}
    assert commands.encode(answer).count(b"\n") == 1
