"""Drift: the live config routes to backends that are gone, stopped or paused, or leaves out routable ones;
`lbgen health` says so (WARNING, naming them) and `status` shows it per backend, until an apply ends it."""
from __future__ import annotations

from lbgen.drift import Drift, DriftKind, find_drift
from lbgen.model import Backend, Inventory, Pool, Skipped
from lbgen.model import OK, WARNING
from lbgen.render import LiveMeta
from test_monitor import standard_world


def backend(name: str) -> Backend:
    return Backend("web", "blue", name, "id-" + name, "10.0.0.1", 8080)


def test_find_drift_names_each_kind():
    live = LiveMeta("g1", {"web": "blue"}, {"web": frozenset({"a", "b", "paused", "gone", "other-env"})})
    inventory = Inventory((backend("a"), backend("b"), backend("new"), backend("other-env")),
                          (Skipped("paused", "not running"),))
    pools = [Pool("web", "blue", (backend("a"), backend("b"), backend("new")))]
    assert find_drift(live, pools, inventory) == {"web": (
        Drift("web", "gone", DriftKind.GONE),
        Drift("web", "other-env", DriftKind.LEFT_OUT),
        Drift("web", "paused", DriftKind.NOT_ROUTABLE, "not running"),
        Drift("web", "new", DriftKind.NOT_ROUTED),
    )}
    assert [d.describe() for d in find_drift(live, pools, inventory)["web"]] == [
        "gone is routed but gone", "other-env is routed but lbgen would leave it out now",
        "paused is routed but not running", "new is routable but not routed"]


def test_no_drift_when_the_live_config_matches_or_does_not_say():
    pools = [Pool("web", "blue", (backend("a"),))]
    inventory = Inventory((backend("a"),))
    assert find_drift(LiveMeta("g", {}, {"web": frozenset({"a"})}), pools, inventory) == {}
    assert find_drift(LiveMeta("g", {}, None), pools, inventory) == {}  # written by an older lbgen
    assert find_drift(None, pools, inventory) == {}


def test_health_warns_about_a_paused_backend_the_proxy_still_routes_to():
    w = standard_world()
    w.app().apply()
    w.engine.update("web-2", running=False)  # `docker pause`: Docker reports it not running
    report = w.app().health()
    assert report.exit_code == WARNING
    lines = report.nagios().splitlines()
    assert lines[0].startswith("LBGEN WARNING - 2 services, 3/3 backends healthy, live config differs from what "
                               "runs for 1 backend | ")
    assert "web_drift=1;;;0" in lines[0]
    assert "web: DRIFT web-2 is routed but not running (run lbgen apply)" in lines
    assert report.to_dict()["services"]["web"]["drift"] == [
        {"backend": "web-2", "kind": "not-routable", "detail": "web-2 is routed but not running"}]
    assert report.to_dict()["services"]["api"]["drift"] == []
    assert "web-2" in w.routed()  # health without --apply changes nothing


def test_status_shows_drift_per_backend_and_apply_ends_it():
    w = standard_world()
    w.app().apply()
    w.backend("web-4")  # started after the last apply: routable, not routed
    status = w.app().status().to_dict()
    rows = {b["name"]: b for b in status["services"]["web"]["backends"]}
    assert (rows["web-4"]["routed"], rows["web-4"]["drift"]) == (False, "web-4 is routable but not routed")
    assert (rows["web-1"]["routed"], rows["web-1"]["drift"]) == (True, None)
    assert status["services"]["web"]["drift"] == [
        {"backend": "web-4", "kind": "not-routed", "detail": "web-4 is routable but not routed"}]
    report = w.app().health(apply=True)
    assert report.exit_code == OK and all(not s.drift for s in report.services)
    assert w.app().status().to_dict()["services"]["web"]["drift"] == []
    assert "web-4" in w.routed()


def test_a_backend_removed_since_the_last_apply_is_routed_but_gone():
    w = standard_world()
    w.app().apply()
    w.engine.remove_container(w.engine.get_container("web-3").id)
    report = w.app().health()
    assert report.exit_code == WARNING
    assert "web: DRIFT web-3 is routed but gone (run lbgen apply)" in report.nagios().splitlines()
