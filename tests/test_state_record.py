"""The record on the engine: two checksummed slots in a never-started holder keyed by the proxy's name, the
record winning over the served config, carrying over an older lbgen's state.json, and the loud fallback
when there is no record. FakeEngine + FakeProxy; tests/test_state_integration.py does it on Docker."""
from __future__ import annotations

import json

from fakeproxy import FakeProxy
from lbgen.app import Lbgen
from lbgen.holder import IMAGE, LABEL, SLOTS, Holder, decode, encode, holder_name
from lbgen.render import parse_meta
from lbgen.state import Origin, State, StateStore


def make(kind: str = "nginx") -> tuple[FakeProxy, Lbgen, list]:
    fp = FakeProxy(kind)
    for env in ("blue", "green"):
        for i in range(2):
            fp.backend(f"web-{env}-{i}", env)
    logs: list = []
    app = Lbgen(fp.config, fp.engine, get=fp.get, sleep=lambda s: None, log=logs.append)
    app.core.proxy.verify_timeout = 0.5
    return fp, app, logs


def served_env(fp: FakeProxy) -> str | None:
    return parse_meta(fp.live().decode()).active["web"]


def recreate(fp: FakeProxy) -> None:
    """`docker rm -f proxy && docker run ... proxy`: same name, new id, empty filesystem, serving nothing."""
    old = fp.engine.get_container("proxy")
    fp.engine.remove_container(old.id)
    fp.info = fp.engine.add_proxy("proxy", fp.kind, network="lbnet", address=old.networks["lbnet"],
                                  id="f" * 64)
    fp.serving = None


def test_two_slots_a_torn_write_leaves_the_previous_record():
    fp = FakeProxy()
    holder = Holder(fp.engine, "proxy")
    assert holder.write("one") == 1 and holder.write("two") == 2 and holder.write("three") == 3
    assert holder.read().body == "three"
    # The holder: never started, from the empty local image, labelled with the proxy's name.
    info = fp.engine.get_container(holder_name("proxy"))
    assert not info.running and info.image == IMAGE and info.labels == {LABEL: "proxy"}
    newest = holder.read()
    other = SLOTS[1] if newest.path == SLOTS[0] else SLOTS[0]
    # A writer killed mid-upload leaves a truncated slot: it fails its checksum, the other one wins.
    fp.engine.write(holder.name, other, encode(4, "four")[:-2])
    assert holder.read().body == "three"
    # The next write goes to the torn slot, never over the newest valid one.
    holder.write("five")
    assert holder.read().body == "five" and decode(newest.path, fp.engine.read(holder.name, newest.path)).body == "three"
    assert decode("x", b"garbage") is None and decode("x", None) is None


def test_a_read_is_one_round_trip_and_a_write_two():
    """Both slots come in one archive of the holder's directory (each engine call is about 0.1 s)."""
    fp = FakeProxy()
    holder = Holder(fp.engine, "proxy")
    holder.write("one")
    since = len(fp.engine.calls)
    assert holder.read().body == "one"
    assert [c[0] for c in fp.engine.calls[since:]] == ["read_files"]
    since = len(fp.engine.calls)
    holder.write("two")
    assert [c[0] for c in fp.engine.calls[since:]] == ["read_files", "put_file"]


def test_the_record_survives_recreating_the_proxy_and_wins_over_what_it_serves():
    fp, app, logs = make()
    app.apply()
    assert app.switch("green", timeout=5).outcome == "switched"
    recreate(fp)
    assert fp.live() is None
    # Any command configures the recreated proxy with the recorded env: here `status`.
    report = Lbgen(fp.config, fp.engine, get=fp.get, sleep=lambda s: None, log=logs.append).status()
    web = report.services[0]
    assert (web.active_env, web.previous_env, web.active_recorded) == ("green", "blue", True)
    assert served_env(fp) == "green" and fp.serving is not None
    assert [e.to_dict()["to"] for e in app.history()] == ["green"]
    assert any(e.name == "repaired" for e in logs)


def test_a_proxy_routing_otherwise_is_brought_in_line_with_a_note():
    fp, app, _ = make()
    app.apply()
    app.switch("green", timeout=5)
    # Someone put a config routing blue back on the proxy (an old backup, an older lbgen).
    fp.engine.write("proxy", fp.path, fp.live().decode().replace('# lbgen-pool: web green', '# lbgen-pool: web blue'))
    result = app.apply()
    assert result.changed and served_env(fp) == "green"
    assert any("record (newest switch) says green: the record wins" in n for n in result.notes)


def test_no_record_with_several_envs_is_loud():
    fp, app, logs = make()
    app.apply()
    warnings = [e.get("message") for e in logs if e.name == "warning"]
    assert len(warnings) == 1 and warnings[0].startswith(
        "no record of which env is active for service web (envs blue, green present); assuming default_env blue")
    report = app.health()
    assert report.status == 1 and "active env assumed (no switch on record) for web" in report.summary()
    assert report.to_dict()["services"]["web"]["active_env_recorded"] is False
    status = app.status().to_dict()["services"]["web"]
    assert status["active_env"] == "blue" and status["active_env_recorded"] is False
    app.switch("green", timeout=5)
    assert app.status().to_dict()["services"]["web"]["active_env_recorded"] is True
    # The holder deleted by hand: the record is gone, the fallback is loud again.
    fp.engine.remove_container(holder_name("proxy"))
    assert app.status().to_dict()["services"]["web"]["active_env_recorded"] is False
    assert app.health().status == 1


def test_an_older_lbgens_state_json_is_carried_over_on_first_contact():
    fp, app, _ = make()
    app.apply()
    app.switch("green", timeout=5)
    # What an older lbgen left: no holder, state.json in the proxy (and the header routing green).
    body = Holder(fp.engine, "proxy").read().body
    fp.engine.remove_container(holder_name("proxy"))
    fp.engine.write("proxy", "/var/lib/lbgen/state.json", body)
    state = StateStore(fp.engine, "proxy", "/var/lib/lbgen").load()
    assert state.origin is Origin.CARRIED_OVER and state.recorded_active == {"web": "green"}
    result = app.apply()
    assert any(n.startswith("carried over the active envs and history from /var/lib/lbgen/state.json") for n in result.notes)
    assert json.loads(Holder(fp.engine, "proxy").read().body)["active"] == {"web": "green"}
    assert fp.engine.read("proxy", "/var/lib/lbgen/state.json") is None  # retired, so it is carried over once
    assert fp.engine.read("proxy", "/var/lib/lbgen/state.json.carried-over") is not None
    recreate(fp)
    app.apply()
    assert served_env(fp) == "green" and [e.to_dict()["to"] for e in app.history()] == ["green"]


def test_the_lock_is_keyed_by_the_proxys_name_and_labelled():
    fp, app, _ = make()
    with app.core.lock("test"):
        marker = fp.engine.get_container("lbgen-lock-proxy")
        assert marker.labels[LABEL] == "proxy" and marker.image == IMAGE
    assert State().origin is Origin.NONE
