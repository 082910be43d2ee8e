"""Wake-up payloads: never wake the agent that acted, and a malformed one wakes nobody and never raises."""

from __future__ import annotations

from scheduler.listener import targets
from tests.support.listener import MALFORMED


def test_payload_never_wakes_the_agent_that_acted() -> None:
    assert targets('{"issue": 1, "actor": "agent:editor", "wake": ["editor", "content-writer"]}') == ["content-writer"]
    assert targets('{"issue": 1, "actor": "human:alice", "wake": ["release-manager"]}') == ["release-manager"]
    assert targets("not json") == []


def test_malformed_payloads_wake_nobody_and_never_raise() -> None:
    for payload in MALFORMED:
        assert targets(payload) == [], payload
    assert targets('{"wake": null, "actor": "human:a"}') == []
    assert targets('{"wake": ["_sweep"]}') == ["_sweep"]  # the parent-waits-on-sub-issues job
    assert targets('{"wake": ["ceo", "ceo", "qa-lead"], "actor": null}') == ["ceo", "qa-lead"]
    assert targets('{"wake": ["ceo"' + ', "ceo"' * 1300 + "]}") == ["ceo"]  # one wake each, however often named
