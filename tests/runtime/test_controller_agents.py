"""The controller hands effects to host agents (pure: fake agents on an invented
timeline): to the agent of the node holding the VM, following the placement when a VM
moves; healing to the receiving node's agent; after a crash, to the agent that holds the
VM now; a report is stored once, in the transaction that saves what the planner learnt."""

from __future__ import annotations

from netsim_imds.events import Kind

from netsim.maintenance import ApplyEffect, Heal
from netsim.maintenance.errors import RepositoryError
from tests.runtime.test_controller_input import T, Clock, make_controller


def handed(c) -> list[tuple[str, str, str]]:
    """(agent's node, action class, vm) of everything handed to any agent, in order per node."""
    return [(node, type(a).__name__, a.vm) for node, agent in c.agents.items() for a, _ in agent.handed]


def test_an_effect_goes_to_the_vms_node_and_a_moved_vm_to_its_new_node(tmp_path):
    clock = Clock()
    c, placement = make_controller(tmp_path, clock)
    event_id = c.add_event("vm1", "Redeploy", 10, 5)
    c.step()
    assert handed(c) == []  # Scheduled: nothing to do yet
    clock.t += 10
    c.step()
    ((action, began),) = c.agents["n1"].handed
    assert isinstance(action, ApplyEffect) and action.kind is Kind.REDEPLOY and began == T + 10
    assert action.target_node in ("n2", "n3") and c.repo.ledger_state(action.key) == "begun"
    placement["vm1"] = action.target_node  # what the agent's move does
    assert c.agent_of("vm1") is c.agents[action.target_node]
    clock.t += 5
    c.agents[action.target_node].controller.effect_done(action)  # the agent that booted it reports
    assert c.repo.applied(action.key) and c.planner.event(event_id) is None
    assert [(e.event_id, e.status) for e in c.repo.history()] == [(event_id, "Completed")]
    assert c.planner.node_of("vm1") == action.target_node
    c.add_event("vm1", "Reboot", 0, 1)  # the next effect goes to the new node's agent
    c.step()
    assert handed(c)[-1] == (action.target_node, "ApplyEffect", "vm1") and len(c.agents["n1"].handed) == 1


def test_a_silent_agent_is_taken_for_a_failed_node_and_healing_goes_to_the_receiving_agent(tmp_path):
    clock = Clock()
    c, placement = make_controller(tmp_path, clock)
    c.node_fail("n1")
    assert c.failed == {"n1"} and c.agents["n1"].silent
    for _ in range(8):  # 4 s of turns: the planner's heartbeat timeout is 3 s
        clock.t += 0.5
        c.step()
    ((node, kind, vm),) = handed(c)
    ((heal, _),) = c.agents[node].handed
    assert (kind, vm) == ("Heal", "vm1") and isinstance(heal, Heal)
    assert heal.from_node == "n1" and node == heal.to_node != "n1"
    assert c.snapshot()["planner_failed_nodes"] == ["n1"] and c.snapshot()["failed_nodes"] == ["n1"]
    placement["vm1"] = heal.to_node
    c.effect_done(heal)
    assert c.repo.applied(heal.key) and c.planner.events() == ()
    assert [e.status for e in c.repo.history()] == ["Completed"]
    c.node_recover("n1")  # its agent heartbeats again: the node is healthy (and empty)
    assert c.failed == set() and c.planner.failed_nodes() == ()


def test_after_a_crash_a_begun_effect_is_resumed_by_the_agent_holding_the_vm_now(tmp_path):
    clock = Clock()
    c, _ = make_controller(tmp_path, clock)
    event_id = c.add_event("vm1", "Redeploy", 0, 30)
    c.step()
    ((action, began),) = c.agents["n1"].handed
    c.repo.close()  # SIGKILL while the agent was in the impact; its move had happened (the kernel says so)
    clock.t += 3
    where = {"vm1": action.target_node, "vm2": "n2", "vm3": "n3"}
    again, _ = make_controller(tmp_path, clock, where)
    again.resume()
    assert handed(again) == [(action.target_node, "ApplyEffect", "vm1")]
    assert again.agents[action.target_node].handed == [(action, began)]  # its first start: the impact ends on time
    again.effect_done(action)
    again.repo.close()
    third, _ = make_controller(tmp_path, clock, where)
    third.resume()
    assert handed(third) == [] and third.planner.event(event_id) is None
    assert [(e.event_id, e.status) for e in third.repo.history()] == [(event_id, "Completed")]


def test_a_report_the_repository_refuses_is_kept_and_stored_at_the_next_turn(tmp_path, monkeypatch):
    clock = Clock()
    c, _ = make_controller(tmp_path, clock)
    event_id = c.add_event("vm2", "Reboot", 0, 1)
    c.step()
    ((action, _),) = c.agents["n2"].handed

    def refuse(*args, **kwargs):
        raise RepositoryError("disk full (simulated)")
    monkeypatch.setattr(c.repo, "finish", refuse)
    clock.t += 1
    c.effect_done(action)  # logged; the planner is put back: it never holds what SQLite lacks
    assert c.repo.ledger_state(action.key) == "begun" and c.planner.event(event_id).status == "Started"
    monkeypatch.undo()
    c.step()
    assert c.repo.applied(action.key) and c.planner.event(event_id) is None
    assert [e.status for e in c.repo.history()] == ["Completed"]


def test_a_report_of_a_failed_effect_completes_the_event_and_is_shown(tmp_path):
    clock = Clock()
    c, _ = make_controller(tmp_path, clock)
    event_id = c.add_event("vm3", "Freeze", 0, 2)
    c.step()
    ((action, _),) = c.agents["n3"].handed
    c.effect_done(action, "NetlinkError: no such device")
    c.effect_done(action)  # reported twice (a resumed effect): stored once, the planner ignores the second
    assert c.planner.event(event_id) is None and c.repo.applied(action.key)
    assert c.snapshot()["errors"] == [f"{action.key}: NetlinkError: no such device"]
    assert [e.status for e in c.repo.history()] == ["Completed"]
