"""Progressive delivery with fakes: the weights plan, the canary in the record and in the pools, the analysis
arithmetic and log parsing, and the steps walked (or rolled back, exit 8) against a FakeProxy whose log
lines are made up. tests/test_canary_integration.py does it with real nginx, HAProxy and backends."""
from __future__ import annotations

import json

import pytest

from fakeproxy import FakeProxy
from lbgen.analysis import (LogReader, Sample, Thresholds, env_map, figures, judge, parse_line, parse_percent,
                            parse_stamp, parse_steps)
from lbgen.app import Lbgen
from lbgen.canary import MAX_WEIGHT, canary_share, split_weights
from lbgen.config import parse_config
from lbgen.errors import AnalysisFailed, ExitCode, UsageError
from lbgen.model import Backend, Canary, Inventory, Outcome
from lbgen.render import render
from lbgen.routing import build_pools
from lbgen.state import State

T0 = 1_800_000_000.0  # the fake wall clock's start


def backend(name: str, env: str | None, weight: int = 1, backup: bool = False, address: str = "10.0.0.1") -> Backend:
    return Backend("web", env, name, name * 2, address, 8080, weight=weight, backup=backup)


# --- the weights plan ------------------------------------------------------------------------------------

@pytest.mark.parametrize("blue,green,weight", [(2, 3, 10), (2, 3, 50), (1, 1, 1), (1, 1, 99), (50, 1, 1),
                                               (1, 50, 99), (3, 2, 25)])
def test_the_canary_gets_its_share_whatever_the_backend_counts(blue, green, weight):
    stable = [backend(f"b{i}", "blue") for i in range(blue)]
    canary = [backend(f"g{i}", "green") for i in range(green)]
    servers = split_weights(stable, canary, weight)
    assert all(1 <= s.weight <= MAX_WEIGHT for s in servers)
    assert max(s.weight for s in servers) == MAX_WEIGHT
    assert abs(canary_share(servers, "green") - weight) < 1.0, [s.weight for s in servers]


def test_weights_within_an_env_still_apply():
    servers = split_weights([backend("b0", "blue", 3), backend("b1", "blue", 1)],
                            [backend("g0", "green", 1), backend("g1", "green", 1), backend("g2", "green", 2)], 10)
    weights = {s.name: s.weight for s in servers}
    assert weights == {"b0": 256, "b1": 85, "g0": 9, "g1": 9, "g2": 19}
    assert abs(canary_share(servers, "green") - 10) < 0.5


def test_one_side_empty_is_returned_as_it_is():
    blue = [backend("b0", "blue", 3)]
    assert split_weights(blue, [], 10) == tuple(blue)
    assert split_weights([], blue, 10) == tuple(blue)


CONFIG = parse_config("""\
network: lbnet
proxy: {kind: nginx, container: proxy}
services:
  web: {default_env: blue}
""")


def test_a_pool_with_a_canary_holds_both_envs_weighted_and_only_the_active_envs_backups():
    inventory = Inventory((backend("b0", "blue"), backend("b1", "blue"), backend("bb", "blue", backup=True),
                           backend("g0", "green"), backend("g1", "green"), backend("g2", "green"),
                           backend("gb", "green", backup=True), backend("any", None)))
    [plain] = build_pools(CONFIG, inventory, {"web": "blue"})
    assert [s.name for s in plain.servers] == ["any", "b0", "b1", "bb"]
    [pool] = build_pools(CONFIG, inventory, {"web": "blue"}, canary={"web": Canary("green", 10)})
    assert pool.active_env == "blue"
    assert [(s.name, s.weight) for s in pool.servers] == [("any", 256), ("b0", 256), ("b1", 256), ("g0", 28),
                                                          ("g1", 28), ("g2", 28), ("bb", 1)]
    assert abs(canary_share(pool.servers, "green") - 10) < 0.5
    # Ejection never empties the canary's side either.
    [ejected] = build_pools(CONFIG, inventory, {"web": "blue"}, {"g0g0", "g1g1", "g2g2"}, {"web": Canary("green", 10)})
    assert {s.name for s in ejected.servers} >= {"g0", "g1", "g2"}
    # A canary of the active env itself changes nothing.
    [same] = build_pools(CONFIG, inventory, {"web": "blue"}, canary={"web": Canary("blue", 10)})
    assert same == plain


def test_nginx_logs_only_the_services_with_a_canary():
    inventory = Inventory((backend("b0", "blue"), backend("g0", "green", address="10.0.0.2")))
    pools = build_pools(CONFIG, inventory, {"web": "blue"}, canary={"web": Canary("green", 10)})
    plain = render(CONFIG, pools, certs={}).text
    assert "log_format" not in plain and "access_log /dev/stdout" not in plain
    logged = render(CONFIG, pools, certs={}, logged={"web"}).text
    assert "log_format lbgen_canary_web escape=json '{\"lbgen\":\"web\",\"upstream\":\"$upstream_addr\"," in logged
    assert "\n        proxy_next_upstream_timeout 60000ms;\n        access_log /dev/stdout lbgen_canary_web;\n" in logged
    assert "server 10.0.0.1:8080 weight=256" in logged and "server 10.0.0.2:8080 weight=28" in logged


# --- the record ------------------------------------------------------------------------------------------

def test_the_canary_is_part_of_the_record_and_older_records_load():
    state = State(canary={"web": Canary("green", 10)}, analysed={"api": "green"})
    back = State.from_json(state.to_json())
    assert back.canary == {"web": Canary("green", 10)} and back.analysed == {"api": "green"}
    assert back.logged() == {"web", "api"}
    old = State.from_json(json.dumps({"version": 1, "active": {"web": "blue"}, "previous": {}, "history": []}))
    assert old.canary == {} and old.recorded_active == {"web": "blue"}
    broken = State.from_json(json.dumps({"active": {"web": "blue"}, "canary": {"web": {"env": "g", "weight": 140},
                                                                              "api": {"env": "g"}}}))
    assert broken.canary == {} and broken.recorded_active == {"web": "blue"}


# --- the analysis ----------------------------------------------------------------------------------------

def samples(env: str, ok: int, errors: int, seconds: float = 0.01) -> list[Sample]:
    return [Sample(T0, env, 200, seconds) for _ in range(ok)] + [Sample(T0, env, 503, seconds) for _ in range(errors)]


def test_a_breach_says_the_figures():
    verdict = judge(samples("green", 166, 14) + samples("blue", 900, 0), "green", ["blue"], Thresholds(0.01))
    assert verdict.breach and not verdict.low_traffic
    assert verdict.message == "green: 14 of 180 responses were 5xx (7.8% > 1%)"
    assert [f.to_dict() for f in verdict.figures] == [
        {"env": "green", "requests": 180, "errors": 14, "error_rate": 0.0778, "p95": 0.01},
        {"env": "blue", "requests": 900, "errors": 0, "error_rate": 0.0, "p95": 0.01}]
    assert not judge(samples("green", 99, 1), "green", [], Thresholds(0.01)).breach  # 1% is not > 1%


def test_low_traffic_passes_with_a_warning_or_fails_and_only_at_the_end_of_the_window():
    few = samples("green", 5, 5)
    passing = judge(few, "green", [], Thresholds(0.01, min_requests=20))
    assert passing.low_traffic and not passing.breach
    assert passing.message == "green: 10 responses in the window, fewer than --min-requests 20 (not enough traffic)"
    assert judge(few, "green", [], Thresholds(0.01, 20, "fail")).breach
    assert not judge(few, "green", [], Thresholds(0.01, 20, "fail"), final=False).breach


def test_the_p95_bound():
    slow = samples("green", 90, 0, 0.1) + samples("green", 10, 0, 0.5)
    assert figures(slow, "green").p95 == 0.5
    verdict = judge(slow, "green", [], Thresholds(0.01, max_p95=0.3))
    assert verdict.breach and verdict.message == "green: p95 latency 500ms > 300ms over 100 responses"
    assert not judge(samples("green", 100, 0, 0.1), "green", [], Thresholds(0.01, max_p95=0.3)).breach


def test_log_lines_of_both_proxies_are_read_as_samples():
    env_of = env_map([backend("web-green-1", "green", address="172.30.0.5"), backend("web-all", None)], "blue")
    nginx = ('2026-12-02T19:00:00.250000000Z {"lbgen":"web","upstream":"172.30.0.9:8080, 172.30.0.5:8080",'
             '"status":"500","time":"0.012"}')
    assert parse_line("nginx", nginx, "web", env_of) == Sample(parse_stamp("2026-12-02T19:00:00.25Z"), "green", 500, 0.012)
    assert parse_line("nginx", nginx.replace('"web"', '"api"'), "web", env_of) is None
    assert parse_line("nginx", "2026-12-02T19:00:00Z 10.0.0.1 - - [..] GET / 200", "web", env_of) is None
    haproxy = ("2026-12-02T19:00:01.000000000Z 172.30.0.1:40000 [02/Dec/2026:19:00:00.990] port_80 "
               "lbgen_web/web-all 0/0/0/3/4 502 120 - - ---- 1/1/0/0/0 0/0 \"GET / HTTP/1.1\"")
    assert parse_line("haproxy", haproxy, "web", env_of) == Sample(parse_stamp("2026-12-02T19:00:01Z"), "blue", 502, 0.004)
    assert parse_line("haproxy", haproxy.replace("lbgen_web/", "lbgen_api/"), "web", env_of) is None
    assert parse_stamp("2026-12-02T19:00:00.5Z") == parse_stamp("2026-12-02T19:00:00Z") + 0.5
    assert parse_stamp("garbage") is None


def test_flags_are_checked():
    assert parse_percent("1%") == 0.01 and parse_percent("0.5%") == 0.005 and parse_percent("0.02") == 0.02
    assert parse_steps("10,25,50,100") == (10, 25, 50, 100)
    for bad in ("50,10", "0,10", "10,101", "10,x", "10,10"):
        with pytest.raises(UsageError):
            parse_steps(bad)
    for bad in ("x%", "150%"):
        with pytest.raises(UsageError):
            parse_percent(bad)
    with pytest.raises(UsageError):
        Thresholds(0.01, on_low_traffic="maybe")


# --- the steps, end to end on a FakeProxy ----------------------------------------------------------------

class Wall:
    """A wall clock that sleeping advances."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


def make() -> tuple[FakeProxy, Lbgen, Wall]:
    fp = FakeProxy()
    for env in ("blue", "green"):
        for i in range(2):
            fp.backend(f"web-{env}-{i}", env)
    wall = Wall()
    app = Lbgen(fp.config, fp.engine, get=fp.get, sleep=wall.sleep, log=lambda e: None, wall=wall)
    app.core.proxy.verify_timeout = 0.5
    app.apply()
    return fp, app, wall


def traffic(fp: FakeProxy, app: Lbgen, env: str, start: float, seconds: float, per_second: int, every: int = 0) -> None:
    """Log lines of `env`'s requests in the proxy's log; with `every`, one in `every` answers 500."""
    address = next(b.endpoint for b in app.discover().backends if b.env == env)
    lines = fp.engine.log_lines.setdefault("proxy", [])
    for i in range(int(seconds * per_second)):
        status = 500 if every and i % every == 0 else 200
        lines.append((start + i / per_second,
                      json.dumps({"lbgen": "web", "upstream": address, "status": str(status), "time": "0.003"},
                                 separators=(",", ":"))))


def test_a_canary_step_keeps_the_active_env_and_the_end_of_it_leaves_previous_alone():
    fp, app, _ = make()
    result = app.switch("green", weight=10)
    assert (result.outcome, result.from_env, result.to_env, result.weight) == (Outcome.CANARY, "blue", "green", 10)
    record = fp.recorded()
    assert record["canary"] == {"web": {"env": "green", "weight": 10}} and record["active"] == {}
    live = fp.live().decode()
    assert "weight=256" in live and "weight=28" in live and "lbgen_canary_web" in live
    status = app.status().to_dict()["services"]["web"]
    assert status["canary"] == {"env": "green", "weight": 10} and status["active_env"] == "blue"
    assert status["drift"] == []
    # apply, health --apply and watch converge from the record: the split stays.
    assert app.apply().changed is False
    app.health(apply=True)
    assert fp.live().decode() == live
    assert app.rollback().outcome is Outcome.CANARY_ENDED
    assert fp.recorded()["canary"] == {} and fp.recorded()["previous"] == {}
    assert "lbgen_canary_web" not in fp.live().decode()
    assert [(e.outcome, e.weight) for e in app.history()] == [(Outcome.CANARY_ENDED, None), (Outcome.CANARY, 10)]
    with pytest.raises(UsageError, match="blue is already the active env"):
        app.switch("blue", weight=10)
    with pytest.raises(UsageError, match="expected 1-99"):
        app.switch("green", weight=100)


def test_steps_that_pass_end_promoted_and_a_breach_puts_all_traffic_back_with_exit_8():
    fp, app, wall = make()
    traffic(fp, app, "green", T0, 30, 10)
    traffic(fp, app, "blue", T0, 30, 40)
    result = app.switch("green", steps=(10, 50, 100), step_time=5, thresholds=Thresholds(0.01))
    assert (result.outcome, result.from_env, result.to_env, result.weight) == (Outcome.SWITCHED, "blue", "green", None)
    assert [w["weight"] for w in result.analysis] == [10, 50]
    assert result.analysis[0]["figures"][0] == {"env": "green", "requests": 51, "errors": 0, "error_rate": 0.0,
                                                "p95": 0.003}
    assert fp.recorded()["active"] == {"web": "green"} and fp.recorded()["previous"] == {"web": "blue"}
    shown = app.status().to_dict()["services"]["web"]["analysis"]
    assert (shown["env"], shown["weight"], shown["passed"], shown["message"]) == (
        "green", 50, True, "green: 0 of 51 responses were 5xx (0%), p95 3ms")
    assert shown["figures"][1] == {"env": "blue", "requests": 204, "errors": 0, "error_rate": 0.0, "p95": 0.003}
    assert [(e.outcome, e.weight) for e in app.history()][:3] == [
        (Outcome.SWITCHED, None), (Outcome.CANARY, 50), (Outcome.CANARY, 10)]

    # Back on blue; now a canary one request in three of which fails.
    app.switch("blue")
    fp.engine.log_lines["proxy"] = []
    traffic(fp, app, "green", wall.now, 30, 10, every=3)
    with pytest.raises(AnalysisFailed) as info:
        app.switch("green", steps=(10, 50, 100), step_time=10, thresholds=Thresholds(0.01))
    assert info.value.exit_code == ExitCode.ANALYSIS == 8
    # Judged every 2s on what the log holds so far: caught once 20 responses were seen (the third read).
    assert str(info.value) == "green: 10 of 29 responses were 5xx (34.5% > 1%); all traffic back on blue"
    assert fp.recorded()["canary"] == {} and fp.recorded()["active"] == {"web": "blue"}
    assert "lbgen_canary_web" not in fp.live().decode() and "env=green" not in fp.live().decode()
    failed = app.history()[0]
    assert (failed.outcome, failed.from_env, failed.to_env) == (Outcome.ANALYSIS_FAILED, "green", "blue")
    assert failed.detail == "green: 10 of 29 responses were 5xx (34.5% > 1%)"
    shown = app.status().to_dict()["services"]["web"]["analysis"]
    assert (shown["weight"], shown["passed"], shown["message"]) == (10, False, failed.detail)


def test_the_analysis_after_a_full_switch_makes_the_previous_env_active_again():
    fp, app, wall = make()
    traffic(fp, app, "green", T0, 30, 20, every=10)
    with pytest.raises(AnalysisFailed, match=r"^green: 4 of 36 responses were 5xx \(11.1% > 1%\); all traffic back on blue$"):
        app.switch("green", analysis=60, thresholds=Thresholds(0.01))
    record = fp.recorded()
    assert record["active"] == {"web": "blue"} and record["previous"] == {"web": "green"} and record["analysed"] == {}
    # A clean window: the switch stands, and the proxy stops logging for lbgen.
    fp.engine.log_lines["proxy"] = []
    traffic(fp, app, "green", wall.now, 30, 20)
    result = app.switch("green", analysis=10, thresholds=Thresholds(0.01))
    assert result.analysis[0]["figures"][0]["requests"] == 202  # 10s from the switch on, and its gate (0.1s)
    assert fp.recorded()["active"] == {"web": "green"} and fp.recorded()["analysed"] == {}
    assert "lbgen_canary_web" not in fp.live().decode()


def test_the_log_reader_keeps_to_its_window(fake_engine):
    fake_engine.add_proxy("proxy")
    fake_engine.log_lines["proxy"] = [(T0 + i / 10, '{"lbgen":"web","upstream":"10.0.0.1:8080","status":"200",'
                                                    '"time":"0.001"}') for i in range(100)]
    reader = LogReader(fake_engine, "proxy", "nginx", "web", {"10.0.0.1:8080": "blue"})
    assert len(reader.read(T0 + 1, T0 + 2)) == 10
    assert len(reader.read(T0, T0 + 10)) == 100


def test_a_proxy_log_that_cannot_be_read_ends_the_canary():
    from lbgen.errors import DockerUnavailable

    fp, app, _ = make()
    fp.engine.fail_on["logs"] = DockerUnavailable("configured logging driver does not support reading")
    with pytest.raises(AnalysisFailed, match=r"^cannot read the proxy's log for the analysis of green \(configured "
                       r"logging driver does not support reading\); all traffic back on blue$"):
        app.switch("green", steps=(10, 100), step_time=5, thresholds=Thresholds(0.01))
    assert fp.recorded()["canary"] == {} and "env=green" not in fp.live().decode()


def test_bad_flags_are_one_error_line_and_exit_2(tmp_path):
    from click.testing import CliRunner

    from lbgen.cli import cli

    config = tmp_path / "lbgen.yaml"
    config.write_text("network: lbnet\nproxy: {kind: nginx, container: proxy}\nservices:\n  web: {default_env: blue}\n")
    for args, message in ((["--steps", "50,10"], "Error: --steps: '50,10': expected rising percentages 1-100"),
                          (["--steps", "10,100", "--max-error-rate", "lots"], "Error: --max-error-rate: 'lots' is not"),
                          (["--weight", "0"], "Invalid value for '--weight': 0 is not in the range 1<=x<=99")):
        result = CliRunner().invoke(cli, ["-c", str(config), "switch", "--env", "green", *args])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
    help_text = CliRunner().invoke(cli, ["switch", "--help"]).output
    assert "--weight N" in help_text and "--steps 10,25,50,100 --step-time 1m" in help_text


def test_analysis_of_a_tcp_service_is_refused_before_anything_changes(tmp_path):
    from click.testing import CliRunner

    from lbgen.cli import cli

    config = tmp_path / "lbgen.yaml"
    config.write_text("network: lbnet\nproxy: {kind: haproxy, container: proxy}\n"
                      "services:\n  db: {default_env: blue, mode: tcp, listen: 6379}\n")
    for args in (["--steps", "10,100"], ["--analysis", "1m"]):
        result = CliRunner().invoke(cli, ["-c", str(config), "switch", "--env", "green", *args])
        assert result.exit_code == 2, result.output
        assert result.output.startswith("Error: service db is mode: tcp: canary analysis judges HTTP responses")


def test_a_haproxy_spare_slot_is_attributed_to_the_backend_it_holds():
    """A backend the runtime API put in a spare slot is logged as lbgen-spare-N: the live layout names it."""
    from fakes import FakeEngine

    engine = FakeEngine()
    engine.add_proxy("proxy", "haproxy")
    line = ("172.30.0.1:40000 [02/Dec/2026:19:00:00.990] port_80 lbgen_web/lbgen-spare-3 0/0/0/3/4 500 120 - - ---- "
            "1/1/0/0/0 0/0 \"GET / HTTP/1.1\"")
    engine.log_lines["proxy"] = [(T0 + 0.5, line)]
    env_of = env_map([backend("web-green-1", "green")], "blue")
    assert LogReader(engine, "proxy", "haproxy", "web", env_of).read(T0, T0 + 1) == []
    reader = LogReader(engine, "proxy", "haproxy", "web", env_of, slots=lambda: {"lbgen-spare-3": "web-green-1"})
    assert [(s.env, s.status) for s in reader.read(T0, T0 + 1)] == [("green", 500)]


# --- sticky canaries (--sticky cookie) -------------------------------------------------------------------

STICKY_YAML = """\
network: lbnet
proxy: {{kind: {kind}, container: proxy}}
services:
  web: {{default_env: blue}}
  shop-api:
    default_env: blue
    hosts: [shop.example.com]
    tls: {{cert: certs/shop.pem, key: certs/shop.key, hsts: 31536000}}
"""


def sticky_render(kind: str, epoch: str = "0a1b2c3d", weight: int = 50, logged: frozenset[str] = frozenset()):
    from lbgen.certs import CertInfo, CertPair

    config = parse_config(STICKY_YAML.format(kind=kind))
    pair = CertPair("certs/shop.pem", "certs/shop.key", b"CERT", b"KEY",
                    CertInfo(1700000000.0, 1900000000.0, ("shop.example.com",)), "5a0b0c0d0e0f0a09")
    inventory = Inventory((
        Backend("web", "blue", "web-blue-1", "wb1", "10.30.0.11", 8080),
        Backend("web", "blue", "web-blue-2", "wb2", "10.30.0.12", 8080, weight=3),
        Backend("web", "green", "web-green-1", "wg1", "10.30.0.21", 8080),
        Backend("web", "green", "web-green-2", "wg2", "10.30.0.22", 8080),
        Backend("shop-api", "blue", "shop-blue-1", "sb1", "10.30.1.11", 9000),
        Backend("shop-api", "blue", "shop-blue-b", "sbb", "10.30.1.12", 9000, backup=True),
        Backend("shop-api", None, "shop-any", "sa", "10.30.1.13", 9000),
        Backend("shop-api", "green", "shop-green-1", "sg1", "10.30.1.21", 9000),
    ))
    canary = {"web": Canary("green", weight, "cookie", epoch), "shop-api": Canary("green", 10, "cookie", "ffff0001")}
    pools = build_pools(config, inventory, {}, canary=canary)
    return render(config, pools, certs={"shop-api": pair}, canary=canary, logged=logged).text


@pytest.mark.parametrize("kind,name", [("nginx", "canary_sticky.nginx.conf"), ("haproxy", "canary_sticky.haproxy.cfg")])
def test_sticky_canary_golden(kind, name):
    """Checked by the real binaries in tests/test_render_validate.py with every golden file."""
    from pathlib import Path

    from test_render import assert_matches_golden

    assert_matches_golden(sticky_render(kind, logged=frozenset({"web"})), Path(__file__).parent / "golden" / name)


def test_the_epoch_stays_while_the_weight_does_not_go_down():
    from lbgen.sticky import next_epoch

    sticky = Canary("green", 25, "cookie", "aaaa")
    assert next_epoch(None, "green", 25, "new") == "new"
    assert next_epoch(sticky, "green", 25, "new") == "aaaa"
    assert next_epoch(sticky, "green", 50, "new") == "aaaa"
    assert next_epoch(sticky, "green", 10, "new") == "new"  # lower: every cookie given so far is void
    assert next_epoch(sticky, "red", 50, "new") == "new"
    assert next_epoch(Canary("green", 25), "green", 50, "new") == "new"  # it was not sticky


def test_a_sticky_canary_in_the_record_the_config_and_status_and_let_go_of_on_a_lower_weight_or_rollback():
    fp, app, _ = make()
    app.switch("green", weight=50, sticky="cookie")
    first = fp.recorded()["canary"]["web"]
    assert set(first) == {"env", "weight", "sticky", "sticky_epoch"} and first["sticky"] == "cookie"
    epoch = first["sticky_epoch"]
    live = fp.live().decode()
    assert f'"lbgen_web=green.{epoch}; Path=/; HttpOnly"' in live and "proxy_pass http://$lbgen_route_web;" in live
    assert app.status().to_dict()["services"]["web"]["canary"] == {"env": "green", "weight": 50, "sticky": "cookie",
                                                                   "sticky_epoch": epoch}
    # The weight goes up: the same cookies stay good; down: new ones.
    app.switch("green", weight=60, sticky="cookie")
    assert fp.recorded()["canary"]["web"]["sticky_epoch"] == epoch
    app.switch("green", weight=20, sticky="cookie")
    lowered = fp.recorded()["canary"]["web"]["sticky_epoch"]
    assert lowered != epoch and f"green.{epoch}" not in fp.live().decode()
    # apply converges to the same sticky config.
    live = fp.live().decode()
    assert app.apply().changed is False and fp.live().decode() == live
    # Without --sticky the next step is a plain canary; a rollback leaves no cookie rule at all.
    app.switch("green", weight=30)
    assert fp.recorded()["canary"]["web"] == {"env": "green", "weight": 30}
    assert "lbgen_route_web" not in fp.live().decode()
    app.switch("green", weight=30, sticky="cookie")
    assert "lbgen_route_web" in fp.live().decode()
    assert app.rollback().outcome is Outcome.CANARY_ENDED
    assert "lbgen_route_web" not in fp.live().decode() and "Set-Cookie" not in fp.live().decode()


def test_status_text_says_the_canary_is_sticky(monkeypatch):
    from click.testing import CliRunner

    from lbgen import cli as cli_module

    fp, app, _ = make()
    app.switch("green", weight=10, sticky="cookie")
    epoch = fp.recorded()["canary"]["web"]["sticky_epoch"]
    monkeypatch.setattr(cli_module, "_app", lambda ctx: app)
    out = CliRunner().invoke(cli_module.cli, ["status"]).output
    assert (f"  CANARY: green gets 10% of requests, blue 90%; sticky: a client keeps the env that served it "
            f"(cookie lbgen_web, epoch {epoch})\n") in out


def test_sticky_flags_are_one_error_line_and_exit_2(tmp_path):
    from click.testing import CliRunner

    from lbgen.cli import cli

    http = tmp_path / "http.yaml"
    http.write_text("network: lbnet\nproxy: {kind: nginx, container: proxy}\nservices:\n  web: {default_env: blue}\n")
    tcp = tmp_path / "tcp.yaml"
    tcp.write_text("network: lbnet\nproxy: {kind: haproxy, container: proxy}\n"
                   "services:\n  db: {default_env: blue, mode: tcp, listen: 6379}\n")
    for config, args, message in (
            (http, ["--sticky", "cookie"], "Error: --sticky goes with --weight or --steps"),
            (http, ["--sticky", "cookie", "--analysis", "1m"], "Error: --sticky goes with --weight or --steps"),
            (http, ["--weight", "10", "--sticky", "ip"], "Invalid value for '--sticky': 'ip' is not 'cookie'"),
            (tcp, ["--weight", "10", "--sticky", "cookie"],
             "Error: --sticky cookie: service db is mode: tcp, which has no cookies")):
        result = CliRunner().invoke(cli, ["-c", str(config), "switch", "--env", "green", *args])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output, result.output
        assert sum(line.startswith("Error:") for line in result.output.splitlines()) == 1, result.output
    assert "--sticky [cookie]" in CliRunner().invoke(cli, ["switch", "--help"]).output


def test_haproxy_servers_of_a_sticky_canary_change_by_reload_since_the_runtime_api_sets_no_cookie():
    """A spare slot filled through the runtime API would keep the spare's (absent) cookie: with a sticky canary
    a backend joining changes its server line's cookie, a structural change, so the render is a fresh layout
    and the change a reload; a plain canary's joining backend still takes a spare at runtime."""
    from lbgen.proxies import kind_named

    kind = kind_named("haproxy")
    config = parse_config("network: lbnet\nproxy: {kind: haproxy, container: proxy}\nservices:\n  web: {default_env: blue}\n")
    two = Inventory((backend("b0", "blue"), backend("g0", "green", address="10.0.0.2")))
    three = Inventory(two.backends + (backend("g1", "green", address="10.0.0.3"),))
    for canary, runtime in ((Canary("green", 50), True), (Canary("green", 50, "cookie", "abcd"), False)):
        def text(inventory, layout=None):
            pools = build_pools(config, inventory, {}, canary={"web": canary})
            return render(config, pools, certs={}, canary={"web": canary}, layout=layout).text
        live = text(two)
        kept = text(three, kind.layout(live))
        assert ("holds=g1" in kept) is True
        assert (kind.runtime_plan(live, kept) is not None) is runtime
        if canary.sticky:
            assert " cookie green.abcd.g1  # env=green holds=g1" in kept
            assert kind.runtime_plan(live, text(two, kind.layout(live))) is not None  # no change: no reload


def test_sticky_steps_keep_one_epoch_while_rising_and_a_breach_ends_the_cookies():
    fp, app, wall = make()
    traffic(fp, app, "green", T0, 30, 10)
    seen: list[tuple[int, str]] = []

    def window(w):
        canary = fp.recorded()["canary"]["web"]
        seen.append((canary["weight"], canary["sticky_epoch"]))

    app.switch("green", steps=(10, 50), step_time=5, thresholds=Thresholds(0.01), sticky="cookie", on_window=window)
    assert [w for w, _ in seen] == [10, 50] and seen[0][1] == seen[1][1] != ""
    assert "lbgen_route_web" in fp.live().decode()
    app.switch("blue")
    fp.engine.log_lines["proxy"] = []
    traffic(fp, app, "green", wall.now, 30, 10, every=3)
    with pytest.raises(AnalysisFailed):
        app.switch("green", steps=(10, 50), step_time=10, thresholds=Thresholds(0.01), sticky="cookie")
    assert fp.recorded()["canary"] == {} and "lbgen_route_web" not in fp.live().decode()


def test_haproxy_canary_weight_steps_are_runtime_api_weight_changes():
    """A canary's weight going 10 -> 25 changes only its servers' weights: HAProxy's runtime API makes it
    live (`set weight`), no reload; the file says the same weights."""
    from lbgen.proxies import kind_named

    kind = kind_named("haproxy")
    config = parse_config("network: lbnet\nproxy: {kind: haproxy, container: proxy}\nservices:\n  web: {default_env: blue}\n")
    inventory = Inventory((backend("b0", "blue"), backend("g0", "green", address="10.0.0.2"),
                           backend("g1", "green", address="10.0.0.3")))

    def text(weight, layout=None):
        canary = {"web": Canary("green", weight)}
        return render(config, build_pools(config, inventory, {"web": "blue"}, canary=canary), certs={},
                      canary=canary, layout=layout).text

    live = text(10)
    stepped = text(25, kind.layout(live))
    plan = kind.runtime_plan(live, stepped)
    assert plan is not None and plan.joined == plan.left == 0
    weights = {c.split()[2]: int(c.split()[3]) for c in plan.commands if c.startswith("set weight")}
    assert weights == {"lbgen_web/g0": 43, "lbgen_web/g1": 43}
    assert "server g0 10.0.0.2:8080 weight 43" in stepped and "server b0 10.0.0.1:8080 weight 256" in stepped
