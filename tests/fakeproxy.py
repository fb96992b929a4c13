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
            meta = parse_meta((self.live() or b"").decode())
            self.serving = meta.generation if meta else None

    def _sh(self, engine: FakeEngine, container, argv: list[str]) -> ExecResult:
        """Run the real script over a temp dir holding this container's files under the config's dir."""
        files = engine.files.setdefault(container.id, {})
        directory = str(Path(self.path).parent)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            def here(path: str) -> bool:  # files of the config's directory itself, not of lbgen-tls/ below
                return path.startswith(directory + "/") and "/" not in path[len(directory) + 1:]

            for path, data in files.items():
                if here(path):
                    (root / Path(path).name).write_bytes(data)
            args = [a.replace(directory, tmp) if a.startswith(directory) else a for a in argv[4:]]
            script = argv[2]
            if len(args) > 2:  # the install script: its validator answers what self.validate says
                new = root / (Path(self.path).name + ".lbgen-new")
                ok, msg = self.validate(new.read_bytes() if new.exists() else b"")
                (root / "validated.verdict").write_text("ok" if ok else "no")
                (root / "validated.msg").write_text(msg)
                args = args[:3] + ["sh", "-c", f'test "$(cat {tmp}/validated.verdict)" = ok || '
                                   f'{{ cat {tmp}/validated.msg; exit 1; }}', "v"]
            proc = subprocess.run(["sh", "-c", script, "sh", *args], capture_output=True, text=True)
            for path in [p for p in files if here(p)]:
                del files[path]
            for f in root.iterdir():
                if not f.name.startswith("validated"):
                    files[f"{directory}/{f.name}"] = f.read_bytes()
        return ExecResult(proc.returncode, proc.stdout + proc.stderr)
