"""Progressive delivery against real nginx and HAProxy with real backends: the weighted split measured over
1,000 requests, promotion and the end of a canary, a canary whose /health passes while a third of its
pages answer 500, caught by the analysis of the proxy's own log and rolled back (exit 8) with blue unharmed,
and a sticky canary (`--sticky cookie`) whose clients keep their env until the weight goes down. The
proxies are the replicas of the official nginx and haproxy images. One set of containers per proxy kind for
the whole module (2 cores)."""
from __future__ import annotations

import http.client
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from lbgen.cli import cli
from scenario import FLAKY_BACKEND, Scenario

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from loadgen import Load  # noqa: E402

ENV_RE = re.compile(r"env=([a-z0-9_-]+)")


@pytest.fixture(scope="module", params=["nginx", "haproxy"])
def setup(request, docker_lab, tmp_path_factory):
    """blue: 2 backends (active), green: 3, red: 2 whose pages answer 500 one time in three; the proxy is the
    replica of the official image (user haproxy, its entrypoint; nginx's logs on stdout), as users run it."""
    lab = docker_lab.scope()
    try:
        official = lab.official_nginx if request.param == "nginx" else lab.official_haproxy
        s = Scenario(lab, tmp_path_factory.mktemp(request.param), request.param, blue=2, green=3, proxy=official)
        for _ in range(2):
            s.add_backend("red", command=FLAKY_BACKEND)
        s.app().apply()
        yield s
    finally:
        lab.close()


def cli_run(s: Scenario, *args: str):
    return CliRunner().invoke(cli, ["--config", str(s.config_path), *args])


def shares(s: Scenario, n: int = 1000) -> Counter:
    """The env that answered each of n requests through the proxy, on one keep-alive connection."""
    seen: Counter = Counter()
    conn = http.client.HTTPConnection(s.proxy_ip, 80, timeout=5)
    for _ in range(n):
        conn.request("GET", "/")
        body = conn.getresponse().read().decode()
        seen[ENV_RE.search(body).group(1)] += 1
    conn.close()
    return seen


def status(s: Scenario) -> dict:
    result = cli_run(s, "status", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["services"]["web"]


def test_the_split_is_honest_and_a_canary_ends_or_is_promoted(setup):
    s = setup
    result = cli_run(s, "switch", "--env", "green", "--weight", "10")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("canary service=web green=10% blue=90% generation=")
    seen = shares(s)
    assert set(seen) == {"blue", "green"} and 70 <= seen["green"] <= 130, seen  # 10% ± 3 points of 1,000
    web = status(s)
    assert (web["active_env"], web["previous_env"], web["canary"]) == ("blue", None, {"env": "green", "weight": 10})
    assert "CANARY: green gets 10% of requests, blue 90%" in cli_run(s, "status").stdout

    step = cli_run(s, "switch", "--env", "green", "--weight", "50", "--json")
    assert step.exit_code == 0, step.output
    # HAProxy: a weight step changes only servers' weights, set through the runtime API (no reload).
    phases = json.loads(step.stdout)["timings"]
    assert ("runtime" in phases and "reload" not in phases) if s.kind == "haproxy" else "reload" in phases, phases
    seen = shares(s)
    assert 470 <= seen["green"] <= 530, seen

    # The end of a canary: everything back on blue, previous_env unchanged.
    back = cli_run(s, "rollback")
    assert back.exit_code == 0, back.output
    assert back.stdout.startswith("canary ended service=web blue=100% generation=")
    assert shares(s, 50) == Counter(blue=50)
    web = status(s)
    assert (web["active_env"], web["previous_env"], web["canary"]) == ("blue", None, None)

    # A canary promoted under load: no request fails, green active, previous blue.
    load = Load(s.url, workers=3, max_seconds=60).start()
    try:
        assert cli_run(s, "switch", "--env", "green", "--weight", "10").exit_code == 0
        promoted = cli_run(s, "switch", "--env", "green")
        assert promoted.exit_code == 0, promoted.output
        time.sleep(0.3)
    finally:
        load.stop()
    assert load.summary()["failed"] == 0, load.summary()
    assert shares(s, 50) == Counter(green=50)
    web = status(s)
    assert (web["active_env"], web["previous_env"], web["canary"]) == ("green", "blue", None)
    history = [(h["from"], h["to"], h["outcome"], h.get("weight"))
               for h in json.loads(cli_run(s, "history", "--json").stdout)]
    assert history[:5] == [("blue", "green", "switched", None), ("blue", "green", "canary", 10),
                           ("blue", "blue", "canary-ended", None), ("blue", "green", "canary", 50),
                           ("blue", "green", "canary", 10)]
    assert cli_run(s, "switch", "--env", "blue").exit_code == 0  # for the next test


def test_a_canary_that_answers_500_is_rolled_back_at_its_first_step(setup):
    s = setup
    assert status(s)["active_env"] == "blue"
    load = Load(s.url, workers=4, max_seconds=90).start()
    try:
        time.sleep(0.3)
        started = time.monotonic()
        result = cli_run(s, "switch", "--env", "red", "--steps", "10,50,100", "--step-time", "20s",
                         "--max-error-rate", "1%", "--min-requests", "20")
        took = time.monotonic() - started
        sent_before = load.summary()["sent"]
        time.sleep(1.0)
    finally:
        load.stop()
    assert result.exit_code == 8, result.output
    error = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"Error: red: \d+ of \d+ responses were 5xx \(\d+(\.\d)?% > 1%\); all traffic back on blue",
                        error), error
    assert took < 20  # caught during the first step, not at its end
    summary = load.summary()
    # Every failure is one of red's 500s (blue unharmed), and none once the command returned.
    assert set(summary["errors"]) <= {"HTTP 500"} and summary["by_env"].get("blue", 0) > 0, summary
    assert summary["sent"] > sent_before
    assert shares(s, 50) == Counter(blue=50)
    web = status(s)
    assert (web["active_env"], web["canary"]) == ("blue", None)
    assert (web["analysis"]["env"], web["analysis"]["weight"], web["analysis"]["passed"]) == ("red", 10, False)
    assert "ANALYSIS " in cli_run(s, "status").stdout
    history = json.loads(cli_run(s, "history", "--json").stdout)
    assert [(h["from"], h["to"], h["outcome"], h.get("weight")) for h in history[:2]] == [
        ("red", "blue", "analysis-failed", None), ("blue", "red", "canary", 10)]
    assert history[0]["detail"].startswith("red: ")


def test_low_traffic_and_the_analysis_after_a_full_switch(setup):
    s = setup
    # No traffic at all: reported; --on-low-traffic fail rolls back.
    quiet = cli_run(s, "switch", "--env", "green", "--steps", "10", "--step-time", "1s", "--on-low-traffic", "fail")
    assert quiet.exit_code == 8, quiet.output
    assert "green: 0 responses in the window, fewer than --min-requests 20 (not enough traffic); all traffic " \
           "back on blue" in quiet.stderr
    passed = cli_run(s, "switch", "--env", "green", "--steps", "10", "--step-time", "1s")
    assert passed.exit_code == 0, passed.output
    assert "not enough traffic" in passed.stderr and status(s)["canary"] == {"env": "green", "weight": 10}
    assert cli_run(s, "rollback").exit_code == 0

    # The same analysis after a full switch: red takes everything, answers 500, and blue is active again.
    load = Load(s.url, workers=4, max_seconds=60).start()
    try:
        result = cli_run(s, "switch", "--env", "red", "--analysis", "15s", "--max-error-rate", "1%")
    finally:
        load.stop()
    assert result.exit_code == 8, result.output
    assert "; all traffic back on blue" in result.stderr
    web = status(s)
    assert (web["active_env"], web["previous_env"], web["canary"]) == ("blue", "red", None)
    assert shares(s, 30) == Counter(blue=30)


def client(s: Scenario, n: int, cookie: str | None = None, keep: bool = True) -> tuple[list[str], str | None]:
    """The env that answered each of n requests of one client (its own keep-alive connection) that sends
    `cookie` and, with `keep`, keeps the one the proxy gives it, as a browser's cookie jar does. Every cookie
    given must name the env that answered."""
    envs = []
    conn = http.client.HTTPConnection(s.proxy_ip, 80, timeout=5)
    for _ in range(n):
        conn.request("GET", "/", headers={"Cookie": cookie} if cookie else {})
        response = conn.getresponse()
        env = ENV_RE.search(response.read().decode()).group(1)
        given = response.getheader("Set-Cookie")
        if given:
            value = given.split(";")[0]
            assert value.startswith("lbgen_web=" + env + "."), (given, env)
            cookie = value if keep else cookie
        envs.append(env)
    conn.close()
    return envs, cookie


def test_a_sticky_client_keeps_its_env_until_the_weight_goes_down(setup):
    s = setup
    assert status(s)["active_env"] == "blue"
    result = cli_run(s, "switch", "--env", "green", "--weight", "50", "--sticky", "cookie")
    assert result.exit_code == 0, result.output
    web = status(s)
    assert web["canary"]["sticky"] == "cookie" and web["canary"]["weight"] == 50
    assert "; sticky: a client keeps the env that served it (cookie lbgen_web" in cli_run(s, "status").stdout
    # Clients that keep their cookies each see one env over 50 requests; a client without cookies sees both.
    pinned: dict[str, str] = {}
    for _ in range(12):
        envs, cookie = client(s, 50)
        assert len(set(envs)) == 1 and cookie is not None, envs
        pinned.setdefault(envs[0], cookie)
        if len(pinned) == 2:
            break
    assert set(pinned) == {"blue", "green"}, pinned
    seen = shares(s, 100)
    assert set(seen) == {"blue", "green"}, seen
    if s.kind == "haproxy":
        # A backend joining a sticky canary gets its cookie: a reload (the runtime API sets no cookie).
        s.add_backend("green")
        applied = cli_run(s, "apply", "--json")
        assert applied.exit_code == 0 and json.loads(applied.stdout)["via"] == "reload", applied.output
        assert len(re.findall(rb" cookie green\.[0-9a-f]+\.", s.live())) == 4

    # Up: the green client stays. Down: its cookie is void, and it is split again like any other client.
    assert cli_run(s, "switch", "--env", "green", "--weight", "60", "--sticky", "cookie").exit_code == 0
    assert client(s, 20, pinned["green"])[0] == ["green"] * 20
    assert cli_run(s, "switch", "--env", "green", "--weight", "10", "--sticky", "cookie").exit_code == 0
    envs, _ = client(s, 50, pinned["green"], keep=False)
    assert "blue" in envs, envs
    # A rollback sends everyone to blue, whatever cookie they carry.
    assert cli_run(s, "switch", "--env", "green", "--weight", "50", "--sticky", "cookie").exit_code == 0
    for _ in range(12):
        envs, cookie = client(s, 10)
        if envs[0] == "green":
            break
    assert envs == ["green"] * 10, envs
    assert cli_run(s, "rollback").exit_code == 0
    assert client(s, 20, cookie)[0] == ["blue"] * 20
    assert status(s)["canary"] is None
