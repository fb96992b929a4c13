"""A proxy container made of a FakeEngine: the real install/restore scripts run with a real sh over a temp
copy of the container's files, the validator is a Python callable, and a reload signal makes the fake
proxy "serve" the generation of the file on disk. Lets the switch and apply logic run in milliseconds."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Callable

from fakes import FakeEngine
from lbgen.config import parse_config
from lbgen.engine import ExecResult
from lbgen.errors import ContainerNotFound
from lbgen.holder import Holder
from lbgen.proxies import haproxy_runtime
from lbgen.render import parse_meta

CONFIG = """\
network: lbnet
proxy: {{kind: {kind}, container: proxy}}
services:
  web:
    default_env: blue
    health: {{path: /health, interval: 100ms, timeout: 50ms, rise: 2, fall: 2}}
"""


class FakeProxy:
    def __init__(self, kind: str = "nginx", config_text: str | None = None) -> None:
        self.kind = kind
        self.engine = FakeEngine()
        self.info = self.engine.add_proxy("proxy", kind, network="lbnet")
        self.config = parse_config(config_text or CONFIG.format(kind=kind))
        self.path = self.config.proxy.config_path
        self.serving: str | None = None  # the generation the fake proxy serves
        self.reload_takes_effect = True
        self.validate: Callable[[bytes], tuple[bool, str]] = lambda data: (True, "")
        self.health: dict[str, int] = {}  # backend address -> status its /health answers
        self.engine.exec_handlers["sh"] = self._sh
        self.reloaded = 0  # reload signals that took effect
        self.runtime_up = True  # HAProxy's admin socket answers
        self.runtime_lines: list[str] = []  # every command line sent to it
        # (backend, server) -> [address, port, weight, maint]: the worker's servers (HAProxy)
        self.runtime_servers: dict[tuple[str, str], list] = {}
        for sig in ("HUP", "USR2"):
            self.engine.signal_handlers[sig] = self._reload

    def backend(self, name: str, env: str | None, status: int = 200, **kw) -> str:
        info = self.engine.add_backend(name, "web", env, network="lbnet", **kw)
        self.health[info.networks["lbnet"]] = status
        return info.networks["lbnet"]

    def get(self, url: str, timeout: float) -> tuple[int, str]:
        """HTTP as lbgen sees it: the proxy's status listener and the backends' /health."""
        host = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[0]
        if host == self.info.networks["lbnet"]:
            if self.serving is None:
                raise ConnectionError("connection refused")
            return 200, f"lbgen generation={self.serving} web=?"
        status = self.health.get(host)
        if status is None:
            raise ConnectionError("connection refused")
        if status == 0:
            raise TimeoutError(f"timeout after {timeout:g}s")
        return status, ""

    def record(self, **active: str) -> None:
        """Put a record of these active envs on the engine, as an earlier switch would have."""
        from lbgen.state import StateStore

        store = StateStore(self.engine, self.config.proxy.container, self.config.proxy.state_dir)
        state = store.load()
        state.recorded_active.update(active)
        store.save(state)

    def recorded(self) -> dict:
        """The record on the engine as JSON ({} when there is none)."""
        import json

        try:
            slot = Holder(self.engine, self.config.proxy.container).read()
        except ContainerNotFound:
            return {}
        return json.loads(slot.body) if slot else {}

    def live(self) -> bytes | None:
        return self.engine.read("proxy", self.path)

    def _reload(self, engine: FakeEngine, container, sig: str) -> None:
        if self.reload_takes_effect:
            text = (self.live() or b"").decode()
            meta = parse_meta(text)
            self.serving = meta.generation if meta else None
            self.reloaded += 1
            self.runtime_servers = {key: [line.address, line.port, line.weight, line.disabled]
                                    for key, line in haproxy_runtime.parse(text).servers.items()}

    def _runtime(self, lines: list[str]) -> ExecResult:
        """HAProxy's admin socket: the commands lbgen sends, applied to runtime_servers."""
        if not self.runtime_up:
            return ExecResult(4, "bash: connect: Connection refused")
        out = []
        for line in lines:
            self.runtime_lines.append(line)
            for command in line.split("; "):
                words = command.split()
                if command == haproxy_runtime.SHOW_STATE:
                    out.append("1\n# be_id be_name srv_id srv_name srv_addr ...")
                    out += [f"3 {be} {i} {srv} {a} 2 {1 if m else 0} {w} {w} 0 0 0 0 0 0 0 0 - {p} - 0 0 - - 0"
                            for i, ((be, srv), (a, p, w, m)) in enumerate(self.runtime_servers.items(), 1)]
                    continue
                server = self.runtime_servers.get(tuple(words[2].split("/", 1)) if len(words) > 2 else ())
                if server is None:
                    out.append("No such server.")
                elif words[:2] == ["set", "server"] and words[3] == "addr":
                    server[0], server[1] = words[4], int(words[6])
                elif words[:2] == ["set", "weight"]:
                    server[2] = int(words[3])
                elif words[:2] == ["set", "server"] and words[3] == "state":
                    server[3] = words[4] == "maint"
        return ExecResult(0, "\n".join(out) + "\n")

    def _sh(self, engine: FakeEngine, container, argv: list[str]) -> ExecResult:
        """Run the real script over temp dirs holding this container's files of the directories its path
        arguments are in (the config's, and nginx's main-context file's)."""
        files = engine.files.setdefault(container.id, {})
        script = argv[2]
        if script == haproxy_runtime.RUNTIME_SCRIPT:
            return self._runtime(argv[5:])
        install = len(argv) > 7  # the install script (the restore script takes PATH SWAP only)
        path_args = [a for a in argv[4:] if a.startswith("/")]
        directories = sorted({str(Path(a).parent) for a in path_args}, key=len, reverse=True)
        with tempfile.TemporaryDirectory() as tmp:
            roots = {d: Path(tmp) / str(i) for i, d in enumerate(directories)}

            def here(directory: str, path: str) -> bool:  # the directory's own files, not lbgen-tls/ below
                return path.startswith(directory + "/") and "/" not in path[len(directory) + 1:]

            def mapped(arg: str) -> str:
                for directory, root in roots.items():
                    if arg.startswith(directory + "/"):
                        return str(root) + arg[len(directory):]
                return arg

            for directory, root in roots.items():
                root.mkdir()
                for path, data in files.items():
                    if here(directory, path):
                        (root / Path(path).name).write_bytes(data)
            args = [mapped(a) for a in argv[4:]]
            stdin = engine.exec_inputs[-1] if "--stdin" in args[3:4] else None
            if install:  # its validator answers what self.validate says
                new = Path(mapped(self.path + ".lbgen-new"))
                if stdin is not None:  # what the script's `head -c N` is about to write
                    new.write_bytes(stdin[:int(args[4])])
                ok, msg = self.validate(new.read_bytes() if new.exists() else b"")
                verdict = Path(tmp) / "validated.verdict"
                verdict.write_text("ok" if ok else "no")
                (Path(tmp) / "validated.msg").write_text(msg)
                keep = 3 + (2 if stdin is not None else 0)
                keep += 3 if args[keep:keep + 1] == ["--also"] else 0
                args = args[:keep] + ["sh", "-c", f'test "$(cat {verdict})" = ok || '
                                      f'{{ cat {tmp}/validated.msg; exit 1; }}', "v"]
            proc = subprocess.run(["sh", "-c", script, "sh", *args], capture_output=True, input=stdin)
            for directory, root in roots.items():
                for path in [p for p in files if here(directory, p)]:
                    del files[path]
                for f in root.iterdir():
                    files[f"{directory}/{f.name}"] = f.read_bytes()
        return ExecResult(proc.returncode, (proc.stdout + proc.stderr).decode("utf-8", errors="replace"))
