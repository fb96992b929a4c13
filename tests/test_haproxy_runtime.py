"""HAProxy without reloads: which changes the runtime API makes live (server slots only), the slot layout a
render keeps, the commands, reading the worker's state; and converge on a fake HAProxy whose admin socket
applies those commands: scale up, scale down and ejection cost no reload, the file matches the runtime
state, reconcile rolls a cut-short change forward, a structural change still reloads."""
from __future__ import annotations

import json

from fakeproxy import FakeProxy
from lbgen.app import Lbgen
from lbgen.model import Backend
from lbgen.proxies import haproxy_runtime as hr
from lbgen.proxies.base import PreviousSlot
from lbgen.render import parse_meta

CONFIG = """\
network: lbnet
proxy: {kind: haproxy, container: proxy, spare_servers: 2}
services:
  web:
    default_env: blue
    health: {path: /health, interval: 100ms, timeout: 50ms, rise: 2, fall: 2}
"""

LIVE = """\
# lbgen-meta: {"generation":"aaaaaaaaaaaa","v":2}
# lbgen-pool: web blue web-1 web-2
global
    stats socket ipv4@127.0.0.1:9181 level admin
frontend lbgen_status
    http-request return status 200 content-type text/plain string "lbgen generation=aaaaaaaaaaaa web=blue"
backend lbgen_web
    default-server inter 1000ms rise 2 fall 3 check
    server web-1 10.0.0.1:8080 weight 1  # env=blue
    server web-2 10.0.0.2:8080 weight 1  # env=blue
    server lbgen-spare-1 127.0.0.1:1 weight 1 disabled  # spare
"""


def b(name: str, address: str, backup: bool = False) -> Backend:
    return Backend(service="web", env="blue", name=name, id=name, address=address, port=8080, backup=backup)


# --- the plan -------------------------------------------------------------------------------------------

def test_a_backend_joining_fills_a_spare_and_one_leaving_is_put_in_maintenance():
    new = (LIVE.replace("aaaaaaaaaaaa", "bbbbbbbbbbbb").replace("web-1 web-2", "web-2 web-3")
           .replace("server web-1 10.0.0.1:8080 weight 1  # env=blue", "server web-1 127.0.0.1:1 weight 1 disabled  # vacant")
           .replace("server lbgen-spare-1 127.0.0.1:1 weight 1 disabled  # spare",
                    "server lbgen-spare-1 10.0.0.3:8080 weight 2  # env=blue holds=web-3"))
    plan = hr.plan(LIVE, new)
    assert plan is not None and (plan.joined, plan.left, plan.port) == (1, 1, 9181)
    # Joining first: a pool whose members are all replaced never has none.
    assert plan.commands == ("set server lbgen_web/lbgen-spare-1 addr 10.0.0.3 port 8080",
                             "set weight lbgen_web/lbgen-spare-1 2", "set server lbgen_web/lbgen-spare-1 state ready",
                             "set server lbgen_web/web-1 state maint")
    assert plan.batches() == ["; ".join(plan.commands)]


def test_anything_but_server_slots_needs_a_reload():
    assert hr.plan(LIVE, LIVE.replace("rise 2 fall 3", "rise 2 fall 4")) is None  # a changed health setting
    assert hr.plan(LIVE, LIVE.replace("web=blue\"", "web=green\"")) is None  # a switch (the status body)
    assert hr.plan(LIVE, LIVE.replace("server web-2 10.0.0.2:8080 weight 1",
                                      "server web-9 10.0.0.2:8080 weight 1")) is None  # a new server name
    assert hr.plan(LIVE, LIVE.replace("10.0.0.2:8080 weight 1", "10.0.0.2:8080 weight 1 backup")) is None
    without_socket = LIVE.replace("    stats socket ipv4@127.0.0.1:9181 level admin\n", "")
    assert hr.plan(without_socket, without_socket.replace("10.0.0.2", "10.0.0.9")) is None
    assert hr.plan(None, LIVE) is None


def test_an_identical_structure_with_identical_servers_is_an_empty_plan():
    plan = hr.plan(LIVE, LIVE.replace("aaaaaaaaaaaa", "cccccccccccc"))
    assert plan is not None and plan.commands == ()


def test_long_plans_are_split_into_lines_the_socket_takes():
    plan = hr.RuntimePlan(9181, tuple(f"set server lbgen_web/lbgen-spare-{i} state ready" for i in range(200)))
    lines = plan.batches()
    assert len(lines) > 1 and all(len(line) <= 4000 for line in lines)
    assert "; ".join(lines).split("; ") == list(plan.commands)


def test_show_servers_state_is_read_and_compared_with_the_file():
    output = ("1\n# be_id be_name srv_id srv_name srv_addr ...\n"
              "3 lbgen_web 1 web-1 10.0.0.1 2 0 1 1 5 6 3 4 6 0 0 0 - 8080 - 0 0 - - 0\n"
              "3 lbgen_web 2 web-2 10.0.0.2 0 1 1 1 5 6 3 4 6 0 0 0 - 8080 - 0 0 - - 0\n"
              "3 lbgen_web 3 lbgen-spare-1 127.0.0.1 0 5 1 1 5 6 3 4 6 0 0 0 - 1 - 0 0 - - 0\n"
              "no need to change the addr, port changed from '1' to '8080' by 'stats socket command'\n")
    state = hr.parse_state(output)
    assert state[("lbgen_web", "web-1")] == hr.RuntimeServer("10.0.0.1", 8080, 1, maint=False)
    assert state[("lbgen_web", "web-2")].maint and state[("lbgen_web", "lbgen-spare-1")].maint
    # web-2 is in maintenance at runtime but serving in the file; the spare agrees (disabled, maint).
    assert [line.name for line in hr.mismatches(hr.parse(LIVE), state)] == ["web-2"]
    # CMAINT (0x04) alone, left by `state ready` on a server the file started `disabled`, is not maint.
    assert not hr.parse_state(output.replace("lbgen-spare-1 127.0.0.1 0 5", "lbgen-spare-1 127.0.0.1 0 4"))[
        ("lbgen_web", "lbgen-spare-1")].maint


# --- slots ----------------------------------------------------------------------------------------------

def test_a_fresh_layout_names_servers_after_their_backends_then_spares():
    slots = hr.assign_slots([b("web-1", "10.0.0.1"), b("web-2", "10.0.0.2")], None, 2)
    assert [(s.name, s.backend.name if s.backend else None) for s in slots] == [
        ("web-1", "web-1"), ("web-2", "web-2"), ("lbgen-spare-1", None), ("lbgen-spare-2", None)]
    assert hr.assign_slots([], None, 2) == ()


def test_the_live_layout_is_kept_new_backends_take_spares_and_an_ejected_one_gets_its_own_slot_back():
    previous = hr.layout(LIVE)
    assert previous == {"web": (PreviousSlot("web-1", "web-1"), PreviousSlot("web-2", "web-2"),
                                PreviousSlot("lbgen-spare-1", None))}
    slots = hr.assign_slots([b("web-2", "10.0.0.2"), b("web-3", "10.0.0.3")], previous["web"], 2)
    assert [(s.name, s.backend.name if s.backend else None) for s in slots] == [
        ("web-1", None), ("web-2", "web-2"), ("lbgen-spare-1", "web-3")]
    vacated = (PreviousSlot("web-1", None), PreviousSlot("web-2", "web-2"), PreviousSlot("lbgen-spare-1", "web-3"))
    back = hr.assign_slots([b("web-1", "10.0.0.1"), b("web-2", "10.0.0.2"), b("web-3", "10.0.0.3")], vacated, 2)
    assert [(s.name, s.backend.name if s.backend else None) for s in back] == [
        ("web-1", "web-1"), ("web-2", "web-2"), ("lbgen-spare-1", "web-3")]


def test_no_free_spare_or_a_new_backup_means_a_fresh_layout():
    previous = hr.layout(LIVE)["web"]
    assert hr.assign_slots([b("web-1", "1.1.1.1"), b("web-3", "1.1.1.3"), b("web-4", "1.1.1.4")], previous, 2) is None
    assert hr.assign_slots([b("web-1", "1.1.1.1"), b("web-5", "1.1.1.5", backup=True)], previous, 2) is None
    assert hr.layout(LIVE.replace("    stats socket ipv4@127.0.0.1:9181 level admin\n", "")) is None


# --- converge on a fake HAProxy -------------------------------------------------------------------------

class Haproxy(FakeProxy):
    def __init__(self) -> None:
        super().__init__("haproxy", CONFIG)

    def app(self) -> Lbgen:
        return Lbgen(self.config, self.engine, get=self.get, sleep=lambda s: None, log=lambda e: None)

    def text(self) -> str:
        return (self.live() or b"").decode()

    def in_sync(self) -> bool:
        return not hr.mismatches(hr.parse(self.text()), {
            k: hr.RuntimeServer(a, p, w, m) for k, (a, p, w, m) in self.runtime_servers.items()})


def started() -> Haproxy:
    proxy = Haproxy()
    for i in (1, 2):
        proxy.backend(f"web-{i}", "blue")
    result = proxy.app().apply()
    assert result.via == "reload" and proxy.reloaded == 1
    return proxy


def test_scale_up_and_down_go_through_the_runtime_api_without_a_reload():
    proxy = started()
    first = parse_meta(proxy.text()).generation
    proxy.backend("web-3", "blue")
    result = proxy.app().apply()
    assert (result.changed, result.via, proxy.reloaded) == (True, "runtime", 1)
    assert "server lbgen-spare-1 " in proxy.text() and "holds=web-3" in proxy.text()
    assert proxy.runtime_servers[("lbgen_web", "lbgen-spare-1")][3] is False and proxy.in_sync()
    meta = parse_meta(proxy.text())
    assert meta.base == first and meta.routed["web"] == {"web-1", "web-2", "web-3"}
    assert "runtime" in result.timings and "reload" not in result.timings
    assert json.loads(json.dumps(result.to_dict()))["via"] == "runtime"
    # Status: the listener still says the generation it was reloaded with; served is the file's.
    status = proxy.app().status()
    assert status.proxy.served_generation == meta.generation and status.proxy.in_sync

    proxy.engine.remove_container("web-1")
    result = proxy.app().apply()
    assert (result.via, proxy.reloaded) == ("runtime", 1) and proxy.in_sync()
    assert "server web-1 127.0.0.1:1 weight 1 disabled  # vacant" in proxy.text()
    assert parse_meta(proxy.text()).base == first
    assert proxy.app().apply().changed is False  # nothing to do: the kept layout is what is live


def test_an_apply_splits_each_config_text_once(monkeypatch):
    """A runtime change reads the live and the new config in several places (reconcile, the slot layout,
    the plan, the check afterwards): each text is split into structure and servers once, not once per
    place (a split of 1,000 services' config takes about 0.2 s: bench/shape_bench.py)."""
    proxy = started()
    proxy.backend("web-3", "blue")
    split: list[str] = []
    generation = hr._generation  # called once per split

    def counted(text: str) -> str | None:
        split.append(text)
        return generation(text)

    monkeypatch.setattr(hr, "_generation", counted)
    assert proxy.app().apply().via == "runtime"
    assert split and len(split) == len(set(split))


def test_spares_exhausted_or_a_structural_change_reload_with_a_fresh_layout():
    proxy = started()
    for i in (3, 4, 5):  # two spares: the third new backend needs a reload
        proxy.backend(f"web-{i}", "blue")
    result = proxy.app().apply()
    assert (result.via, proxy.reloaded) == ("reload", 2)
    text = proxy.text()
    assert "holds=" not in text and "server web-5 " in text and text.count("# spare") == 2
    assert parse_meta(text).base is None and proxy.serving == parse_meta(text).generation


def test_reconcile_keeps_a_runtime_change_and_finishes_one_cut_short():
    proxy = started()
    proxy.backend("web-3", "blue")
    assert proxy.app().apply().via == "runtime"
    # A killed lbgen: the file was swapped, the runtime commands never sent.
    proxy.runtime_servers[("lbgen_web", "lbgen-spare-1")][3] = True
    result = proxy.app().apply()
    assert proxy.in_sync() and proxy.reloaded == 1
    assert any("interrupted runtime change" in note for note in result.notes)
    assert "holds=web-3" in proxy.text()  # not reverted


def test_an_unreachable_runtime_api_falls_back_to_a_reload():
    proxy = started()
    proxy.runtime_up = False
    proxy.backend("web-3", "blue")
    result = proxy.app().apply()
    assert (result.via, proxy.reloaded) == ("reload", 2)
    assert any("reloaded instead" in note for note in result.notes)
    assert proxy.serving == parse_meta(proxy.text()).generation


def test_health_ejection_and_readmission_need_no_reload():
    proxy = started()
    address = proxy.engine.get_container("web-2").networks["lbnet"]
    app = proxy.app()
    proxy.health[address] = 503
    for _ in range(3):
        app.health(apply=True)
    assert "server web-2 127.0.0.1:1 weight 1 disabled" in proxy.text() and proxy.in_sync()
    proxy.health[address] = 200
    for _ in range(3):
        app.health(apply=True)
    assert "server web-2 " + address + ":8080 weight 1  # env=blue" in proxy.text() and proxy.in_sync()
    assert proxy.reloaded == 1


# --- lbgen.yaml -----------------------------------------------------------------------------------------

def test_spare_servers_and_runtime_port_are_haproxy_keys_checked_against_the_services():
    import pytest

    from lbgen.config import parse_config
    from lbgen.errors import ConfigError

    config = parse_config(CONFIG)
    assert (config.proxy.spare_servers, config.proxy.runtime_port) == (2, 9181)
    default = parse_config(CONFIG.replace(", spare_servers: 2", ""))
    assert default.proxy.spare_servers == 16
    assert parse_config(CONFIG.replace("kind: haproxy, ", "kind: nginx, ").replace(", spare_servers: 2", "")
                        ).proxy.spare_servers == 0
    with pytest.raises(ConfigError, match="proxy.spare_servers: only HAProxy"):
        parse_config(CONFIG.replace("kind: haproxy, ", "kind: nginx, "))
    with pytest.raises(ConfigError, match="services.web.listen: port 9181 is proxy.runtime_port"):
        parse_config(CONFIG.replace("  web:\n", "  web:\n    listen: 9181\n"))
    with pytest.raises(ConfigError, match="proxy.runtime_port: 9180 is proxy.status_port"):
        parse_config(CONFIG.replace("spare_servers: 2", "runtime_port: 9180"))
    # A status_port of 9181 moves the default runtime port out of its way (an explicit one must differ).
    assert parse_config(CONFIG.replace("spare_servers: 2", "status_port: 9181")).proxy.runtime_port == 9182
    # No runtime API: no admin socket on loopback, no spares; the port is free for a service.
    off = parse_config(CONFIG.replace("spare_servers: 2", "spare_servers: 0").replace("  web:\n", "  web:\n    listen: 9181\n"))
    assert off.proxy.spare_servers == 0


def test_a_reload_cut_short_after_a_runtime_change_puts_the_runtime_born_file_back():
    import re

    proxy = started()
    proxy.backend("web-3", "blue")
    assert proxy.app().apply().via == "runtime"
    runtime_born = proxy.text()
    # A killed lbgen: a structural change (a new health setting, a reload-born file: no base) was swapped
    # in, the reload never sent. The proxy still serves the runtime-born file's base.
    swapped = re.sub(r"^# lbgen-meta: .*$", '# lbgen-meta: {"generation":"ffffffffffff","v":2}',
                     runtime_born.replace("rise 2 fall 2", "rise 2 fall 3"), count=1, flags=re.M)
    files = proxy.engine.files[proxy.info.id]
    files[proxy.path + ".lbgen-prev"], files[proxy.path] = runtime_born.encode(), swapped.encode()
    live, note = proxy.app().core.proxy.reconcile()
    assert live == runtime_born and "had not taken effect" in note and proxy.reloaded == 1


def test_after_a_restart_the_next_runtime_change_is_made_on_the_restarted_generation():
    proxy = started()
    proxy.backend("web-3", "blue")
    assert proxy.app().apply().via == "runtime"
    runtime_born = parse_meta(proxy.text())
    proxy._reload(proxy.engine, None, "USR2")  # a restart: HAProxy loads the runtime-born file
    assert proxy.serving == runtime_born.generation
    proxy.backend("web-4", "blue")
    assert proxy.app().apply().via == "runtime"
    assert parse_meta(proxy.text()).base == runtime_born.generation
    result = proxy.app().apply()  # reconcile keeps it (it must not put the runtime-born file back)
    assert not result.changed and "holds=web-4" in proxy.text() and proxy.in_sync()
    assert proxy.app().status().proxy.served_via == "runtime"
