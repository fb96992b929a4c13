"""lbgen.yaml under fuzzing, through the CLI: malformed YAML, unknown keys, wrong types, out-of-range
numbers, bad durations, duplicate listen/host pairs. Every invalid file exits 3 with one `Error: ` line
naming the file, line and key path; never a traceback. Every valid file renders a config that the real
nginx / HAProxy accepts.

The oracle for "valid" is the README's lbgen.yaml table, written here independently of lbgen.config.
Examples per property: LBGEN_FUZZ_EXAMPLES (default 300); derandomized (a fixed seed) when CI=true.
"""
from __future__ import annotations

import copy
import math
import os
import re
import string
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from testutil import real_binary, report_figures
from lbgen.cli import cli
from lbgen.config import parse_config

CI = os.environ.get("CI") == "true"
EXAMPLES = int(os.environ.get("LBGEN_FUZZ_EXAMPLES", "300"))
_settings: dict[str, Any] = dict(
    max_examples=EXAMPLES, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
if CI:
    _settings.update(derandomize=True, database=None)
FUZZ = settings(**_settings)
FIGURES: Counter[str] = Counter()

BASE: dict[str, Any] = {
    "network": "app-net",
    "label_prefix": "lbgen",
    "proxy": {"kind": "nginx", "container": "edge", "config_path": "/etc/nginx/conf.d/lbgen.conf",
              "status_port": 9180, "state_dir": "/var/lib/lbgen"},
    "services": {
        "web": {"listen": 80, "hosts": ["shop.example.com", "*.shop.example.com"], "algorithm": "least_conn",
                "default_env": "blue", "connect_timeout": "2s", "read_timeout": "30s", "retries": 2,
                "health": {"path": "/health", "expect_status": "2xx", "interval": "1s", "timeout": "2s",
                           "rise": 2, "fall": 3}},
        "api": {"listen": 80, "hosts": ["api.example.com"], "algorithm": "hash", "hash_key": "$request_uri"},
        "site": {"listen": 8080},
    },
}
INVENTORY = """\
backends:
  - {service: web, env: blue, name: web-blue-1, address: 192.0.2.11, port: 8080}
  - {service: web, env: blue, name: web-blue-2, address: 192.0.2.12, port: 8080, weight: 3, backup: true}
  - {service: api, name: api-1, address: 192.0.2.21, port: 9000}
  - {service: site, name: site-1, address: "2001:db8::1", port: 80}
"""

# --- the oracle: the README's lbgen.yaml table -----------------------------------------------------------


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def port_of(v: Any, strings: bool) -> int | None:
    if strings and isinstance(v, str) and 1 <= len(v) <= 5 and v.isascii() and v.isdigit():
        v = int(v)
    return v if is_int(v) and 1 <= v <= 65535 else None


def duration(v: Any) -> float | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, float):
        seconds = v
    elif isinstance(v, int):
        seconds = v if abs(v) < 10**9 else math.inf
    elif isinstance(v, str):
        m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?", v.strip())
        if not m:
            return None
        seconds = float(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]
    else:
        return None
    return seconds if 0 < seconds <= 86400 else None


def matches(pattern: str) -> Any:
    return lambda v: isinstance(v, str) and re.fullmatch(pattern, v) is not None


NAME = r"[a-z0-9][a-z0-9_-]{0,62}"
HOST = r"(?:\*\.)?[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*"
ALGORITHMS = ("round_robin", "least_conn", "ip_hash", "hash", "random")


def abs_path(v: Any) -> bool:
    return matches(r"/[A-Za-z0-9._/-]{1,255}")(v) and "/../" not in v + "/"


NETWORK = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"


def network(v: Any) -> bool:
    """One Docker network name, or a non-empty list of distinct names."""
    if isinstance(v, list):
        return bool(v) and all(matches(NETWORK)(n) for n in v) and len(set(v)) == len(v)
    return matches(NETWORK)(v)


def host_list(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(h, str) and len(h) <= 253 and re.fullmatch(HOST, h) for h in v)


WORK: list[Path] = []  # the `work` fixture's directory, which holds lbgen.yaml
LEAVES = {  # key (relative to its mapping) -> is the value valid on its own
    "network": network,
    "label_prefix": matches(r"[a-z0-9][a-z0-9._-]{0,62}"),
    # relative to lbgen.yaml, in the `work` directory; a directory that is not there is an error
    "templates_dir": lambda v: isinstance(v, str) and v != "" and os.path.isdir(os.path.join(WORK[0], v)),
    "kind": lambda v: v in ("nginx", "haproxy") and isinstance(v, str),
    "container": matches(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"),
    "config_path": abs_path,
    "state_dir": abs_path,
    "status_port": lambda v: port_of(v, strings=True) is not None,
    "listen": lambda v: port_of(v, strings=False) is not None,
    "hosts": host_list,
    "algorithm": lambda v: isinstance(v, str) and v in ALGORITHMS,
    "hash_key": matches(r"\$(request_uri|uri|remote_addr|(http|cookie|arg)_[a-z0-9_]{1,64})"),
    "default_env": matches(NAME),
    "path": matches(r"/[A-Za-z0-9._~/%?=&+-]{0,255}"),
    "expect_status": lambda v: (is_int(v) or isinstance(v, str)) and re.fullmatch(r"[1-5](?:[0-9]{2}|xx)", str(v)),
    "interval": lambda v: duration(v) is not None,
    "timeout": lambda v: duration(v) is not None,
    "connect_timeout": lambda v: duration(v) is not None,
    "read_timeout": lambda v: duration(v) is not None,
    "rise": lambda v: is_int(v) and 1 <= v <= 100,
    "fall": lambda v: is_int(v) and 1 <= v <= 100,
    "retries": lambda v: is_int(v) and 0 <= v <= 10,
}
MAPPINGS = {(): ("network", "label_prefix", "templates_dir", "proxy", "services"),
            ("proxy",): ("kind", "container", "config_path", "status_port", "state_dir"),
            "service": ("listen", "hosts", "algorithm", "hash_key", "default_env", "health", "connect_timeout",
                        "read_timeout", "retries"),
            "health": ("path", "expect_status", "interval", "timeout", "rise", "fall")}


def routes_error(doc: dict[str, Any]) -> str | None:
    """The key path check_routes reports for a document whose leaves are all valid, or None."""
    status = port_of(doc["proxy"].get("status_port", 9180), strings=True)
    seen: dict[tuple[int, str], str] = {}
    for name, svc in doc["services"].items():
        svc = svc or {}
        listen = svc.get("listen", 80)
        if listen == status:
            return f"services.{name}.listen"
        for host in svc.get("hosts") or [""]:
            if (listen, host) in seen:
                return f"services.{name}.hosts"
            seen[(listen, host)] = name
    return None


def service_relations(name: str, svc: dict[str, Any]) -> str | None:
    algorithm = svc.get("algorithm", "round_robin")
    if algorithm == "hash" and "hash_key" not in svc:
        return f"services.{name}.algorithm"
    if algorithm != "hash" and "hash_key" in svc:
        return f"services.{name}.hash_key"
    return None


# --- running the CLI --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def work(tmp_path_factory, request):
    work = tmp_path_factory.mktemp("config-fuzz")
    (work / "inventory.yaml").write_text(INVENTORY)
    (work / "templates").mkdir()  # a templates_dir without templates: the built-in ones are used
    WORK[:] = [work]
    temp = "".join(f"    {k}_temp_path {work / k};\n" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (work / "nginx.conf").write_text(
        f"pid {work / 'nginx.pid'};\nerror_log {work / 'error.log'};\nevents {{}}\n"
        f"http {{\n    access_log off;\n{temp}    include {work / 'lbgen.conf'};\n}}\n")
    yield work
    report_figures(request, "lbgen.yaml fuzz: " + ", ".join(f"{v} {k}" for k, v in sorted(FIGURES.items())))


def run(work: Path, text: str | bytes) -> Any:
    path = work / "lbgen.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return CliRunner().invoke(cli, ["-c", str(path), "render", "--from-file", str(work / "inventory.yaml")])


def assert_config_error(result: Any, key_path: str | None = None) -> str:
    """Exit 3, stdout empty, stderr exactly one `Error: lbgen.yaml...` line (naming key_path)."""
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.exit_code == 3, (result.exit_code, result.output)
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and result.stderr.endswith("\n"), result.stderr
    line = lines[0]
    assert line.startswith("Error: ") and "lbgen.yaml" in line, line
    if key_path is not None:
        assert re.match(r"Error: \S*lbgen\.yaml(:\d+)?: ", line), line
        shown = key_path if key_path.isprintable() else key_path.encode("unicode_escape").decode("ascii")
        assert f": {shown}: " in line, (key_path, line)
    FIGURES["invalid files, exit 3"] += 1
    return line


def assert_valid(work: Path, result: Any, kind: str) -> None:
    assert result.exit_code == 0, result.output
    text = result.stdout
    if kind == "nginx":
        (work / "lbgen.conf").write_text(text)
        argv = [real_binary("nginx"), "-t", "-e", str(work / "error.log"), "-p", str(work), "-c", str(work / "nginx.conf")]
    else:
        (work / "haproxy.cfg").write_text(text)
        argv = [real_binary("haproxy"), "-c", "-f", str(work / "haproxy.cfg")]
    checked = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, f"{kind} rejected the config rendered from a valid lbgen.yaml:\n" \
                                    f"{checked.stdout}{checked.stderr}\n---\n{text}"
    FIGURES[f"valid files, rendered and accepted by {kind}"] += 1


# --- strategies -------------------------------------------------------------------------------------------

hostile_text = st.one_of(
    # YAML itself folds its extra line breaks (NEL, LS, PS) into spaces, so a key holding one is not the key
    # lbgen sees: leave them out rather than re-implement YAML's folding in the assertion.
    st.text(alphabet=st.characters(blacklist_characters="\x85\u2028\u2029"), max_size=30),
    st.text(alphabet=st.sampled_from(";{}$#\"'\\\n\t :-[]&*!|>%@`,?" + string.ascii_lowercase + string.digits),
            max_size=20),
    st.sampled_from(["", " ", "5x", "-1s", "0", "0ms", "1d", "2 s", "25h", "86401", "1e3", "nan", "1.5.2", "80",
                     "yes", "no", "~", "null", "Nginx", "HAProxy", "round-robin", "$host", "$http_X",
                     "$cookie_", "health", "/he alth", "/../etc", "//", "/a/../b", "*.example.com",
                     "Example.com", "a..b", "-a.com", "2xx", "600", "099", "5xx ", "x" * 300]),
)
hostile_value = st.one_of(
    hostile_text, st.none(), st.booleans(), st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from([0, -1, 65536, 101, 11, 86401, 2**63, 10**400]), st.floats(),
    st.lists(st.one_of(st.integers(), hostile_text), max_size=3),
    st.dictionaries(hostile_text, st.integers(), max_size=2),
)
_network_name = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True)
valid_leaf = {
    "network": st.one_of(_network_name, st.lists(_network_name, min_size=1, max_size=3, unique=True)),
    "label_prefix": st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True),
    "templates_dir": st.sampled_from(["templates", "no-such-templates"]),
    "kind": st.sampled_from(["nginx", "haproxy"]),
    "container": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,20}", fullmatch=True),
    "config_path": st.sampled_from(["/etc/haproxy/haproxy.cfg", "/x", "/a/b.conf"]),
    "state_dir": st.sampled_from(["/var/lib/lbgen", "/tmp/x.y", "/"]).filter(lambda p: len(p) > 1),
    "status_port": st.one_of(st.integers(1, 65535), st.integers(1, 65535).map(str)),
    "listen": st.integers(1, 65535),
    "hosts": st.lists(st.from_regex(HOST, fullmatch=True).filter(lambda h: len(h) <= 253), max_size=3),
    "algorithm": st.sampled_from(ALGORITHMS),
    "hash_key": st.from_regex(r"\$(request_uri|uri|remote_addr|(http|cookie|arg)_[a-z0-9_]{1,10})", fullmatch=True),
    "default_env": st.from_regex(r"[a-z0-9][a-z0-9_-]{0,20}", fullmatch=True),
    "path": st.from_regex(r"/[A-Za-z0-9._~/%?=&+-]{0,40}", fullmatch=True),
    "expect_status": st.one_of(st.integers(100, 599), st.sampled_from(["2xx", "3xx", "204", "1xx"])),
    "rise": st.integers(1, 100), "fall": st.integers(1, 100), "retries": st.integers(0, 10),
}
valid_duration = st.one_of(st.sampled_from(["500ms", "2s", "1m", "1h", "24h", "0.5", " 3s ", "1.25s"]),
                           st.integers(1, 86400), st.floats(min_value=0.001, max_value=86400))
for key in ("interval", "timeout", "connect_timeout", "read_timeout"):
    valid_leaf[key] = valid_duration

LEAF_PATHS = [("network",), ("label_prefix",), ("templates_dir",)] \
    + [("proxy", k) for k in MAPPINGS[("proxy",)]] \
    + [("services", s, k) for s in ("web", "api", "site") for k in MAPPINGS["service"] if k != "health"] \
    + [("services", "web", "health", k) for k in MAPPINGS["health"]]
MAPPING_PATHS = [(), ("proxy",), ("services", "web"), ("services", "web", "health"), ("services", "site")]


def get(doc: Any, path: tuple) -> Any:
    for key in path:
        doc = doc[key]
    return doc


# What mutations() draws from, built once: fresh strategy objects on every draw cost hypothesis a
# validation each time.
LEAF_VALUES = {key: st.one_of(valid_leaf[key], hostile_value) if key in valid_leaf else hostile_value
               for key in {path[-1] for path in LEAF_PATHS}}


def _unknown_key(allowed: Any) -> st.SearchStrategy[str]:
    return st.one_of(hostile_text, st.sampled_from(["wieght", "Listen", "health_check", "hosts "])) \
        .filter(lambda k: k not in allowed and k != "")


UNKNOWN_KEYS = {where: _unknown_key(MAPPINGS[where] if where in MAPPINGS
                                    else MAPPINGS["health" if where[-1] == "health" else "service"])
                for where in MAPPING_PATHS}
NOT_A_MAPPING = hostile_value.filter(lambda v: not isinstance(v, dict) and v is not None)
BAD_SERVICE_NAME = hostile_text.filter(lambda n: not re.fullmatch(NAME, n))


@st.composite
def mutations(draw: Any) -> tuple[dict[str, Any], str, Any]:
    """A copy of BASE with one targeted change; (document, kind of change, the key path that must be named
    or None when the change happens to be valid)."""
    doc = copy.deepcopy(BASE)
    doc["proxy"]["kind"] = draw(st.sampled_from(["nginx", "haproxy"]))
    change = draw(st.sampled_from(["leaf", "leaf", "leaf", "unknown", "missing", "not_a_mapping", "service_name",
                                   "duplicate_route", "no_services"]))
    if change == "leaf":
        path = draw(st.sampled_from(LEAF_PATHS))
        key = path[-1]
        value = draw(LEAF_VALUES[key])
        get(doc, path[:-1])[key] = value
        loaded = yaml.safe_load(yaml.safe_dump(value))
        if not LEAVES[key](loaded):
            return doc, change, ".".join(path)
        if path[:2] == ("services", "web") or path[:2] == ("services", "api") or path[:2] == ("services", "site"):
            relation = service_relations(path[1], get(doc, path[:2]))
            if relation:
                return doc, change, relation
        return doc, change, "routes"
    if change == "unknown":
        where = draw(st.sampled_from(MAPPING_PATHS))
        key = draw(UNKNOWN_KEYS[where])
        get(doc, where)[key] = draw(hostile_value)
        return doc, change, ".".join(where + (key,))
    if change == "missing":
        where, key = draw(st.sampled_from([((), "network"), ((), "proxy"), ((), "services"), (("proxy",), "kind"),
                                           (("proxy",), "container")]))
        del get(doc, where)[key]
        return doc, change, ".".join(where) or "(top level)"
    if change == "not_a_mapping":
        where = draw(st.sampled_from([("proxy",), ("services", "web"), ("services", "web", "health")]))
        value = draw(NOT_A_MAPPING)
        get(doc, where[:-1])[where[-1]] = value
        return doc, change, ".".join(where)
    if change == "service_name":
        name = draw(BAD_SERVICE_NAME)
        doc["services"] = {name: {"listen": 9000}, **doc["services"]}
        return doc, change, f"services.{name}"
    if change == "duplicate_route":
        other = draw(st.sampled_from(["web", "api", "site"]))
        copied = {k: v for k, v in doc["services"][other].items() if k in ("listen", "hosts")}
        doc["services"]["copy"] = copied
        return doc, change, "services.copy.hosts"
    doc["services"] = draw(st.sampled_from([{}, [], None, "web"]))
    return doc, change, "services"


# --- the properties ---------------------------------------------------------------------------------------

@FUZZ
@given(mutation=mutations())
def test_one_change_to_a_valid_file_is_named_by_key_path_or_renders_a_valid_config(work, mutation):
    doc, change, key_path = mutation
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    result = run(work, text)
    if key_path == "routes":  # every leaf is valid; only port/host clashes are left to check
        key_path = routes_error(yaml.safe_load(text))
    if key_path is None:
        assert_valid(work, result, doc["proxy"]["kind"])
        return
    assert_config_error(result, key_path)
    FIGURES[f"mutation {change}"] += 1


yaml_ish = st.lists(st.sampled_from(list(":-{}[],'\"#&*!|>%@`? \t\n") + [
    "\n  ", "\n- ", ": ", "network", "proxy", "services", "kind", "nginx", "web", "80", "2s", "ä", "\x00", "\ufeff",
    "\r", "!!int ", "!!float ", "!!timestamp ", "!!binary ", "!!set ", "!!map ", "!!seq ", "&a ", "*a", "<<: ",
    "2001-13-45", "0x", "1e400", "~", ".nan", "? "]), max_size=40).map("".join)


@FUZZ
@given(text=st.one_of(yaml_ish, st.text(max_size=200),
                      st.builds(lambda a, b, c: a[:c] + b + a[c:], st.just(yaml.safe_dump(BASE, sort_keys=False)),
                                yaml_ish, st.integers(0, 900))))
def test_arbitrary_text_is_a_one_line_error_or_a_valid_config(work, text):
    result = run(work, text)
    if result.exit_code == 0:
        assert_valid(work, result, parse_config(text).proxy.kind)
        return
    assert_config_error(result)
    FIGURES["arbitrary texts"] += 1


@FUZZ
@given(data=st.binary(max_size=60))
def test_arbitrary_bytes_are_a_one_line_error(work, data):
    result = run(work, data)
    assert_config_error(result)


# --- pinned cases: what a user sees -----------------------------------------------------------------------

VALID = yaml.safe_dump(BASE, sort_keys=False)


@pytest.mark.parametrize("text,expected", [
    ("network: [unclosed\n", "Error: {f}:2: invalid YAML: expected ',' or ']', but got '<stream end>'"),
    ("network: a\n\tproxy: x\n", "Error: {f}:2: invalid YAML: found character '\\t' that cannot start any token"),
    ("a: 1\na: 2\n", "Error: {f}:2: duplicate key 'a'"),
    ("- just\n- a list\n", "Error: {f}: (top level): expected a mapping, got a list"),
    ("", "Error: {f}: (top level): expected a mapping, got nothing"),
    (VALID.replace("  web:\n    listen: 80", "  web:\n    lisen: 80"),
     "Error: {f}:11: services.web.lisen: unknown key (expected one of: listen, mode, hosts, algorithm, hash_key, "
     "default_env, health, connect_timeout, read_timeout, websocket_timeout, retries, tls, paths, strip_prefix, "
     "nginx_snippet, haproxy_snippet)"),
    (VALID.replace("interval: 1s", "interval: 5x"),
     "Error: {f}:23: services.web.health.interval: '5x' is not a duration (e.g. 500ms, 2s, 1m)"),
    (VALID.replace("interval: 1s", "interval: 25h"),
     "Error: {f}:23: services.web.health.interval: '25h' is out of range (more than 0, at most 24h)"),
    (VALID.replace("retries: 2", "retries: 11"), "Error: {f}:19: services.web.retries: expected an integer 0-10, got 11"),
    (VALID.replace("rise: 2", "rise: '2'"), "Error: {f}:25: services.web.health.rise: expected an integer 1-100, got '2'"),
    (VALID.replace("listen: 8080", "listen: 65536"),
     "Error: {f}:34: services.site.listen: 65536 is not a port (expected 1-65535)"),
    (VALID.replace("status_port: 9180", "status_port: 8080"),
     "Error: {f}:34: services.site.listen: port 8080 is proxy.status_port, which lbgen keeps for itself"),
    (VALID.replace("- api.example.com", "- shop.example.com"),
     "Error: {f}:29: services.api.hosts: port 80 with host shop.example.com is already routed to service web"),
    (VALID + "  other:\n    listen: 8080\n",
     "Error: {f}:36: services.other.hosts: port 8080 with no hosts (the default server) is already routed to "
     "service site"),
    (VALID.replace("default_env: blue", "default_env: 2001-13-45"),
     "Error: {f}:16: invalid YAML: invalid timestamp value '2001-13-45'"),
    (VALID.replace("retries: 2", "retries: !!int two"), "Error: {f}:19: invalid YAML: invalid int value 'two'"),
    (VALID.replace("kind: nginx", "kind: !!python/object:os.system x"),
     "Error: {f}:4: invalid YAML: could not determine a constructor for the tag "
     "'tag:yaml.org,2002:python/object:os.system'"),
], ids=["unclosed", "tab", "duplicate-key", "list", "empty", "unknown-key", "bad-duration", "duration-range",
        "retries-range", "wrong-type", "port-range", "status-port-clash", "duplicate-host", "duplicate-default",
        "bad-date", "bad-tag-value", "python-tag"])
def test_what_a_user_sees(work, text, expected):
    result = run(work, text)
    assert_config_error(result)
    assert result.stderr == expected.format(f=work / "lbgen.yaml") + "\n"


@pytest.mark.parametrize("text,key_path", [
    ("network: [unclosed\n", None),
    (VALID.replace("interval: 1s", "interval: 5x"), "services.web.health.interval"),
    (VALID.replace("  site:", "  site:\n    wieght: 2"), "services.site.wieght"),
    (VALID.replace("- api.example.com", "- shop.example.com"), "services.api.hosts"),
    (VALID.replace("retries: 2", "retries: 2001-13-45"), None),
])
def test_the_installed_program_exits_3_with_one_line(tmp_path, text, key_path):
    """The same through `python -m lbgen` in a fresh process: exit 3, one line on stderr, no traceback."""
    (tmp_path / "lbgen.yaml").write_text(text)
    (tmp_path / "inventory.yaml").write_text(INVENTORY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LBGEN_")}
    result = subprocess.run([sys.executable, "-m", "lbgen", "-c", str(tmp_path / "lbgen.yaml"), "render",
                             "--from-file", str(tmp_path / "inventory.yaml")],
                            capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 3, result.stderr
    assert result.stdout == "" and "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1 and result.stderr.startswith(f"Error: {tmp_path / 'lbgen.yaml'}:")
    if key_path:
        assert f": {key_path}: " in result.stderr


def test_a_key_with_control_characters_stays_on_one_line(work):
    text = VALID.replace("  site:", '  site:\n    "evil\\nError: forged\\u001b[2K": 1')
    line = assert_config_error(run(work, text), "services.site.evil\nError: forged\x1b[2K")
    assert "\\nError: forged\\x1b[2K" in line


def test_a_duration_of_nan_or_infinity_is_out_of_range(work):
    for value in (".nan", ".inf", "-.inf"):
        assert_config_error(run(work, VALID.replace("timeout: 2s", f"timeout: {value}")), "services.web.health.timeout")


@pytest.mark.parametrize("value,valid", [
    ("0", True), (["0"], True), (["app-net", "other.net"], True),
    ([], False), (["app-net", "app-net"], False), ([0], False), (["app net"], False), ([["app-net"]], False),
], ids=["one-name", "one-item", "two-items", "empty", "duplicate", "not-a-string", "bad-name", "nested"])
def test_network_is_one_name_or_a_non_empty_list_of_distinct_names(work, value, valid):
    """Both branches of the oracle's `network` rule, and lbgen agreeing with it."""
    assert bool(LEAVES["network"](value)) is valid
    doc = copy.deepcopy(BASE)
    doc["network"] = value
    result = run(work, yaml.safe_dump(doc, sort_keys=False))
    if valid:
        assert_valid(work, result, doc["proxy"]["kind"])
    else:
        assert_config_error(result, "network")
