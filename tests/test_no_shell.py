"""An audit: no shell ever sees a label value or a config value, and nothing secret is logged.

- By reading lbgen's source (ast): no subprocess, os.system/popen/exec*/spawn*, shell=True, eval or exec
  anywhere, except the `ssh ... docker system dial-stdio` that lbgen.ssh_transport starts for an ssh://
  DOCKER_HOST (an argv list from ssh_argv, no shell); every command goes through Engine.exec as a list literal whose items are
  whole values (never an f-string, a concatenation or a formatted string); the only shell run is `sh -c`
  with one of the three constant scripts (two in lbgen.proxies.driver, the probe in lbgen.probe), every
  value after them a positional argument.
- By running apply / switch / rollback on a FakeEngine proxy (the real scripts run under a real sh), with
  config paths that would be options or code if anything interpolated them: the recorded execs.
- Secrets: the values of unknown labels and of other tools' labels, and containers' environment, never
  reach a log line, an error, the rendered config or the state file.
"""
from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from fakeproxy import FakeProxy
import lbgen
from lbgen import probe as probe_module
from lbgen.proxies import driver as proxy_module
from lbgen.proxies import haproxy_runtime
from lbgen import doctor as doctor_module
from lbgen.proxies import kind_named
from lbgen.app import Lbgen
from lbgen.sources.docker import DockerSource
from lbgen.docker_convert import info_from_inspect, info_from_summary
from lbgen.docker_engine import DockerEngine
from lbgen.render import parse_meta

LBGEN = Path(lbgen.__file__).resolve().parent
SOURCES = sorted(LBGEN.rglob("*.py"))
SCRIPTS = {"INSTALL_SCRIPT": proxy_module.INSTALL_SCRIPT, "RESTORE_SCRIPT": proxy_module.RESTORE_SCRIPT,
           "PROBE": probe_module.PROBE, "PROBE_SCRIPT": doctor_module.PROBE_SCRIPT,
           "CONNECT_PROBE": probe_module.CONNECT_PROBE, "RUNTIME_SCRIPT": haproxy_runtime.RUNTIME_SCRIPT}
SCRIPT_HOMES = {"INSTALL_SCRIPT": "proxies/scripts.py", "RESTORE_SCRIPT": "proxies/scripts.py", "PROBE": "probe.py",
                "PROBE_SCRIPT": "doctor.py", "CONNECT_PROBE": "probe.py", "RUNTIME_SCRIPT": "proxies/haproxy_runtime.py"}
SHELLS = {"sh", "bash", "dash", "ash", "zsh", "/bin/sh", "/bin/bash", "/usr/bin/env", "env", "busybox"}
SECRET = "hunter2-9f8e7d"


def trees() -> list[tuple[Path, ast.Module]]:
    return [(p, ast.parse(p.read_text(), str(p))) for p in SOURCES]


def where(path: Path, node: ast.AST) -> str:
    return f"{path.name}:{getattr(node, 'lineno', '?')}"


def test_the_audit_reads_the_whole_package():
    names = {p.relative_to(LBGEN).as_posix() for p in SOURCES}
    assert {"proxies/driver.py", "proxies/nginx.py", "proxies/haproxy.py", "state.py", "docker_engine.py", "app.py",
            "cli.py"} <= names


def test_no_process_is_started_on_the_host_and_no_shell_is_asked_for():
    problems = []
    for path, tree in trees():
        for node in ast.walk(tree):
            if path.name == "ssh_transport.py" and _is_the_ssh_transport(node):
                continue
            if isinstance(node, ast.Import):
                problems += [f"{where(path, node)} imports {a.name}" for a in node.names
                             if a.name.split(".")[0] in ("subprocess", "pty", "pexpect", "sh", "plumbum")]
            elif isinstance(node, ast.ImportFrom):
                module = (node.module or "").split(".")[0]
                if module in ("subprocess", "pty", "pexpect", "sh", "plumbum"):
                    problems.append(f"{where(path, node)} imports from {node.module}")
                if module in ("os", "asyncio"):
                    problems += [f"{where(path, node)} imports {module}.{a.name}" for a in node.names
                                 if a.name in ("system", "popen") or a.name.startswith(("exec", "spawn", "posix_spawn",
                                                                                       "create_subprocess"))]
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                if node.value.id == "os" and (node.attr in ("system", "popen", "fork", "forkpty")
                                              or node.attr.startswith(("exec", "spawn", "posix_spawn"))):
                    problems.append(f"{where(path, node)} uses os.{node.attr}")
                if node.value.id == "asyncio" and node.attr.startswith("create_subprocess"):
                    problems.append(f"{where(path, node)} uses asyncio.{node.attr}")
            elif isinstance(node, ast.keyword) and node.arg == "shell":
                problems.append(f"{where(path, node.value)} passes shell=")
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("eval", "exec"):
                problems.append(f"{where(path, node)} calls {node.func.id}()")
    assert problems == []


def _is_the_ssh_transport(node: ast.AST) -> bool:
    """lbgen.ssh_transport: `import subprocess` (its one Popen is checked below)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names] == ["subprocess"]
    return False


def test_the_one_host_process_is_ssh_without_a_shell():
    source = (LBGEN / "ssh_transport.py").read_text()
    tree = ast.parse(source)
    runs = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
            and isinstance(n.func.value, ast.Name) and n.func.value.id == "subprocess"]
    assert [ast.unparse(n.func) for n in runs] == ["subprocess.Popen"]
    assert "shell" not in {k.arg for k in runs[0].keywords}
    assert ast.unparse(runs[0].args[0]) == "self.argv"
    function = next(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef) and n.name == "ssh_argv")
    first = next(n for n in ast.walk(function) if isinstance(n, ast.Assign) and ast.unparse(n.targets[0]) == "argv")
    assert isinstance(first.value, ast.List) and ast.unparse(first.value.elts[0]) == "'ssh'"
    from lbgen.ssh_transport import ssh_argv

    assert ssh_argv("ssh://deploy@prod.example:2222") == [
        "ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-l", "deploy", "-p", "2222", "--", "prod.example",
        "docker system dial-stdio"]
    for path, tree in trees():
        if path.name != "ssh_transport.py":
            assert "subprocess" not in path.read_text(), path


def exec_calls() -> list[tuple[str, ast.Call]]:
    """Every `<something>.exec(container, argv)` in lbgen."""
    calls = []
    for path, tree in trees():
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "exec":
                calls.append((where(path, node), node))
    return calls


def test_every_command_is_an_argv_list_of_whole_values():
    calls = exec_calls()
    assert len(calls) >= 4, "the audit should see the proxy driver's and state.py's execs"
    for at, call in calls:
        assert len(call.args) == 2 and all(k.arg in ("user", "stdin") for k in call.keywords), \
            f"{at}: exec(container, argv[, user=...][, stdin=...]) expected"
        argv = call.args[1]
        assert isinstance(argv, ast.List), f"{at}: argv must be a list literal, got {ast.unparse(argv)}"
        for item in argv.elts:
            # A value is passed whole (a name, an attribute, a constant, *a constant list); never built into
            # a string with other text, which is how a value becomes part of a command.
            assert isinstance(item, (ast.Constant, ast.Name, ast.Attribute, ast.Starred)), \
                f"{at}: argv item {ast.unparse(item)} is computed"
            if isinstance(item, ast.Constant):
                assert isinstance(item.value, str), f"{at}: argv item {item.value!r} is not a string"
        first = argv.elts[0]
        assert isinstance(first, ast.Constant), f"{at}: the program must be a constant, got {ast.unparse(first)}"


def test_the_only_shell_runs_a_constant_script_with_values_as_positional_arguments():
    shells = []
    for at, call in exec_calls():
        items = call.args[1].elts
        if items[0].value not in SHELLS:
            continue
        shells.append(items[2].id if isinstance(items[2], ast.Name) else None)
        assert [ast.unparse(i) for i in items[:2]] == ["'sh'", "'-c'"], at
        assert isinstance(items[2], ast.Name) and items[2].id in SCRIPTS, f"{at}: sh -c {ast.unparse(items[2])}"
        assert isinstance(items[3], ast.Constant) and items[3].value == "sh", f"{at}: $0 must be a constant"
    assert sorted(shells) == ["CONNECT_PROBE", "INSTALL_SCRIPT", "PROBE", "PROBE_SCRIPT", "RESTORE_SCRIPT",
                              "RESTORE_SCRIPT", "RUNTIME_SCRIPT"]
    # The scripts are constant text in their modules (not built at run time).
    for name, home in SCRIPT_HOMES.items():
        tree = ast.parse((LBGEN / home).read_text())
        assigned = {t.id: node.value for node in tree.body if isinstance(node, ast.Assign)
                    for t in node.targets if isinstance(t, ast.Name)}
        assert isinstance(assigned[name], ast.Constant) and isinstance(assigned[name].value, str), name
    for name, script in SCRIPTS.items():
        # Values arrive as $1, $2, "$@"; no eval, no source, nothing re-parsed as shell text.
        assert "eval" not in script, name
        assert not any(line.strip().startswith((". ", "source ", "exec ")) for line in script.splitlines()), name


def test_the_docker_engine_passes_argv_as_a_list_and_refuses_a_string():
    class NoApi:
        base_url = "http+docker://localhost"

    class Client:
        api = NoApi()

    engine = DockerEngine(client=Client())
    for bad in ("nginx -s reload", ["sh", 3], [], None):
        with pytest.raises(ValueError, match="exec needs a non-empty list of strings"):
            engine.exec("proxy", bad)
    source = (LBGEN / "docker_engine.py").read_text()
    assert "exec_create(container, list(argv)," in source


# --- what the execs are, with config paths that would be options or code if interpolated ------------------

HOSTILE_PATHS = {
    "nginx": ("/etc/nginx/conf.d/-rf.--help..lbgen-x_y.conf", "/var/lib/-n/--/.._x"),
    "haproxy": ("/usr/local/etc/haproxy/-f.cfg", "/var/lib/lbgen/-p.state"),
}
HOSTILE_MAIN = "/etc/nginx/--also.-t"  # nginx's main-context file
CONFIG = """\
network: lbnet
proxy: {{kind: {kind}, container: proxy, config_path: "{path}", state_dir: "{state}"}}
services:
  web:
    default_env: blue
    health: {{path: "/health?a=1&b=-x", interval: 100ms, timeout: 50ms, rise: 1, fall: 1}}
"""


@pytest.mark.parametrize("kind", ["nginx", "haproxy"])
def test_apply_switch_and_rollback_exec_only_whole_values(kind):
    path, state = HOSTILE_PATHS[kind]
    config = CONFIG.format(kind=kind, path=path, state=state)
    if kind == "nginx":
        config = config.replace("proxy: {", f'proxy: {{main_config_path: "{HOSTILE_MAIN}", ', 1)
    fp = FakeProxy(kind, config)
    fp.backend("web-blue-1", "blue")
    fp.backend("web-green-1", "green", labels={"lbgen.secret": SECRET})  # skipped: unknown label
    fp.backend("web-green-2", "green", labels={"com.example.password": SECRET})
    logs: list = []
    app = Lbgen(fp.config, fp.engine, get=fp.get, sleep=lambda s: None, log=logs.append)
    app.core.proxy.verify_timeout = 0.5
    assert app.apply().changed
    assert app.switch("green", timeout=5).outcome == "switched"
    assert app.rollback(timeout=5).outcome == "switched"
    assert parse_meta(fp.live().decode()).active == {"web": "blue"}

    mode, validator = kind_named(kind).validate_mode, kind_named(kind).validator
    assert validator[0] == kind and mode == ("inplace" if kind == "nginx" else "candidate")
    # the files come on the install's stdin (`--stdin N`, N the config's length); nginx's main-context file too
    also = ("--stdin", "N", *(("--also", HOSTILE_MAIN, "rename") if kind == "nginx" else ()))
    allowed = {
        ("sh", "-c", proxy_module.INSTALL_SCRIPT, "sh", path, mode, "rename", *also, *validator),
        ("sh", "-c", proxy_module.RESTORE_SCRIPT, "sh", path, "rename"),
        ("sh", "-c", proxy_module.RESTORE_SCRIPT, "sh", HOSTILE_MAIN, "rename"),
        ("mv", "-f", f"{state}/state.json", f"{state}/state.json.carried-over"),  # carrying over an old record
    }
    execs = [tuple(argv) for _, argv in fp.engine.execs]
    assert all(argv[8].isdigit() for argv in execs if "--stdin" in argv[7:8])
    execs = [(*argv[:8], "N", *argv[9:]) if "--stdin" in argv[7:8] else argv for argv in execs]
    assert execs and set(execs) <= allowed, set(execs) - allowed
    assert set(fp.engine.exec_users) == {"0"}  # lbgen's steps run as root whatever the image's user
    assert sum(argv[2] == proxy_module.INSTALL_SCRIPT for argv in execs if argv[0] == "sh") == 3
    # Every path that reaches a command is one whole argument, after the options, and starts with "/",
    # so it can be neither an option nor part of the script.
    for argv in execs:
        assert path not in argv[2] and state not in " ".join(argv[:2])
        assert all(a.startswith("/") for a in argv if path in a or state in a or HOSTILE_MAIN in a)
    if kind == "nginx":  # the main-context file went in with every install, as one generation
        assert fp.engine.read("proxy", HOSTILE_MAIN).decode().startswith(
            f"# lbgen-main: generation {parse_meta(fp.live().decode()).generation}\n")

    # No secret in any log line, the rendered config, the state file or what discovery hands out.
    everything = "\n".join(map(str, logs)) + fp.live().decode() + json.dumps(fp.recorded())
    assert "web-green-1" in "\n".join(map(str, logs)) and "'lbgen.secret'" in "\n".join(map(str, logs))
    assert SECRET not in everything
    inventory = app.discover()
    assert SECRET not in json.dumps([b.to_dict() for b in inventory.backends]) + repr(inventory)


def test_a_containers_environment_is_never_read():
    inspect = {"Id": "c" * 64, "Name": "/web-1", "Image": "sha256:1",
               "Config": {"Labels": {"lbgen.service": "web"}, "Env": [f"DB_PASSWORD={SECRET}"],
                          "ExposedPorts": {"8080/tcp": {}}},
               "State": {"Running": True},
               "NetworkSettings": {"Networks": {"lbnet": {"IPAddress": "192.0.2.9", "NetworkID": "n" * 64}}}}
    info = info_from_inspect(inspect)
    assert SECRET not in repr(info)
    summary = {"Id": "c" * 64, "Names": ["/web-1"], "Labels": {"lbgen.service": "web"}, "State": "running",
               "Command": f"env DB_PASSWORD={SECRET} app", "NetworkSettings": {"Networks": {}}}
    assert SECRET in repr(info_from_summary(summary).command)  # PID 1's command line is the operator's own
    for path in SOURCES:
        text = path.read_text()
        assert '"Env"' not in text and "'Env'" not in text, f"{path.name} reads containers' environment"


@pytest.mark.parametrize("labels,shown", [
    ({"lbgen.service": "web", "lbgen.token": SECRET}, "unknown label 'lbgen.token'"),
    ({"lbgen.service": "web", f"lbgen.{SECRET}": "x"}, "unknown label"),
    ({"lbgen.service": "web", "lbgen.port": "80", "vault.token": SECRET}, None),
    ({"lbgen.service": "web", "lbgen.port": "8080\nwarning: forged"}, "label lbgen.port: '8080\\nwarning: forged'"),
])
def test_a_skip_warning_names_the_label_key_never_another_labels_value(labels, shown):
    from fakes import FakeEngine

    engine = FakeEngine()
    engine.add_backend("web-1", "web", port=None, labels=labels, exposed_ports=(8080,))
    inventory = DockerSource(engine, "lbnet").discover()
    lines = [str(s) for s in inventory.skipped]
    if shown is None:
        assert lines == [] and len(inventory.backends) == 1
        return
    assert len(lines) == 1 and lines[0].startswith("skipped container web-1: ") and shown in lines[0]
    assert lines[0].isprintable()
    if labels.get("lbgen.token") == SECRET:
        assert SECRET not in lines[0]
