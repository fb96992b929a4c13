"""Per-phase timings (lbgen/timings.py) as apply, switch and `apply --json` report them: which phases, in
which order, and that they add up to no more than the total. No timing values are asserted."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

import lbgen.cli as cli_module
from fakeproxy import FakeProxy
from lbgen.app import Lbgen
from lbgen.timings import PHASES, Timings

CHANGE = ["lock", "reconcile", "discover", "render", "deliver", "validate", "reload", "verify", "total"]


class TickingClock:
    """Every reading moves time on a little, so each phase takes some time and none is exactly zero."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        self.now += 0.001
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def make(kind="nginx"):
    fp = FakeProxy(kind)
    for i in range(2):
        fp.backend(f"web-blue-{i}", "blue")
        fp.backend(f"web-green-{i}", "green")
    clock = TickingClock()
    app = Lbgen(fp.config, fp.engine, get=fp.get, clock=clock, sleep=clock.sleep, log=lambda e: None)
    app.core.proxy.verify_timeout = 0.5
    return fp, app


def adds_up(timings):
    phases = {k: v for k, v in timings.items() if k != "total"}
    assert all(v > 0 for v in phases.values()), timings
    assert sum(phases.values()) <= timings["total"]


def test_phases_add_up_in_order_and_count_a_failed_block():
    clock = TickingClock()
    t = Timings(clock)
    with t.phase("render"):
        clock.sleep(1.0)
    with t.phase("lock"):
        clock.sleep(0.5)
    with pytest.raises(RuntimeError):
        with t.phase("render"):
            clock.sleep(2.0)
            raise RuntimeError("boom")
    data = t.finish().as_dict()
    assert list(data) == ["lock", "render", "total"]
    assert data["render"] >= 3.0 and data["lock"] >= 0.5
    assert t.finish().as_dict()["total"] == data["total"]  # finish fixes the total once
    assert list(t.fields()) == ["lock", "render"] and t.fields()["lock"].endswith("s")
    with pytest.raises(ValueError):
        with t.phase("nap"):
            pass


@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_apply_times_every_phase_of_a_change(kind):
    _, app = make(kind)
    result = app.apply()
    assert result.changed
    assert list(result.timings) == CHANGE
    adds_up(result.timings)
    again = app.apply()  # byte-identical: nothing delivered, validated or reloaded
    assert not again.changed
    assert list(again.timings) == ["lock", "reconcile", "discover", "render", "total"]
    adds_up(again.timings)


def test_dry_run_times_the_read_and_the_render_only():
    _, app = make()
    result = app.apply(dry_run=True)
    assert list(result.timings) == ["reconcile", "discover", "render", "total"]


def test_switch_times_the_gate_and_the_record_too():
    _, app = make()
    app.apply()
    result = app.switch("green")
    assert list(result.timings) == ["lock", "reconcile", "discover", "gate", "render", "deliver", "validate",
                                    "reload", "verify", "record", "total"]
    assert list(result.timings) == [p for p in PHASES if p in result.timings] + ["total"]
    adds_up(result.timings)
    assert set(result.to_dict()["timings"]) == set(result.timings)


def test_apply_json_is_one_object_and_the_text_line_is_unchanged(monkeypatch, tmp_path):
    _, app = make()
    monkeypatch.setattr(cli_module, "_app", lambda ctx: app)
    config = tmp_path / "lbgen.yaml"
    config.write_text("")
    out = CliRunner().invoke(cli_module.cli, ["-c", str(config), "apply", "--json"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout)
    assert set(data) == {"changed", "generation", "via", "timings", "notes", "warnings"}
    assert data["changed"] is True and set(data["timings"]) == set(CHANGE)  # keys sorted
    text = CliRunner().invoke(cli_module.cli, ["-c", str(config), "apply"])
    assert text.exit_code == 0 and text.stdout.startswith("unchanged generation=")
    dry = json.loads(CliRunner().invoke(cli_module.cli, ["-c", str(config), "apply", "--dry-run", "--json"]).stdout)
    assert dry["dry_run"] is True and dry["changed"] is False and dry["diff"] == ""
