"""Jinja2 environment and render(): turns a Config and its Pools into proxy config text. Pure: writes nothing.

Every value a template prints has passed lbgen.grammar; the `nginx_str` / `haproxy_str` filters quote
anything textual once more for the target syntax, so a template bug cannot become an injection.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from lbgen import __version__
from lbgen.config import Config, ServiceConfig
from lbgen.errors import ConfigError
from lbgen.model import Backend, Pool
from lbgen.proxies import kind_named

BUILTIN_TEMPLATES = "lbgen.templates"  # package data (top-level templates/ in a checkout)
GENERATION_PLACEHOLDER = "LBGEN_GENERATION_PLACEHOLDER"
META_PREFIX = "# lbgen-meta: "
META_RE = re.compile(r"^# lbgen-meta: (\{.*\})$", re.M)
# After the meta line, one or more lines per service: its active env and the backends it routes to, by
# container name (`-` for no env). This is how `health` and `status` know what the live config routes to.
# nginx refuses a token (a comment line included) longer than its 4 KiB buffer: lines stay well under it.
POOL_PREFIX = "# lbgen-pool: "
POOL_RE = re.compile(r"^# lbgen-pool: (.*)$", re.M)
POOL_LINE_MAX = 1000
STATUS_BODY_SERVICES = 40  # the status listener's answer names at most this many services' envs


@dataclass(frozen=True)
class Rendered:
    text: str
    generation: str
    active: dict[str, str | None]
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServiceView:
    """What a template sees of one service."""

    name: str
    config: ServiceConfig
    active_env: str | None
    servers: tuple[Backend, ...]  # primaries first, then backups

    @property
    def upstream(self) -> str:
        return f"lbgen_{self.name}"

    @property
    def primary(self) -> tuple[Backend, ...]:
        return tuple(s for s in self.servers if not s.backup)

    @property
    def backups(self) -> tuple[Backend, ...]:
        return tuple(s for s in self.servers if s.backup)


@dataclass(frozen=True)
class PortView:
    """One listening port: the services on it, with the host-less one (if any) as the default."""

    port: int
    services: tuple[ServiceView, ...]
    default: ServiceView | None


@dataclass(frozen=True)
class LiveMeta:
    """What lbgen wrote into a config's header: its generation and the active env per service."""

    generation: str
    active: dict[str, str | None]
    # service -> the backends (container names) the config routes to; None when the config does not say
    # (written by an older lbgen)
    routed: dict[str, frozenset[str]] | None = None


def parse_meta(text: str) -> LiveMeta | None:
    """Read the `# lbgen-meta:` header (and the `# lbgen-pool:` lines) of a config lbgen rendered, or None.
    A config written by an older lbgen carries the active envs in the header and no pool lines."""
    match = META_RE.search(text or "")
    if not match:
        return None
    try:
        data = json.loads(match.group(1))
        generation = str(data["generation"])
        if "active" in data:
            return LiveMeta(generation=generation, active=dict(data["active"]))
    except (ValueError, KeyError, TypeError):
        return None
    active: dict[str, str | None] = {}
    routed: dict[str, set[str]] = {}
    for line in POOL_RE.findall(text):
        service, env, *names = line.split()
        active.setdefault(service, None if env == "-" else env)
        routed.setdefault(service, set()).update(names)
    return LiveMeta(generation, active, {k: frozenset(v) for k, v in routed.items()})


def pool_lines(services: Sequence[ServiceView]) -> list[str]:
    """`# lbgen-pool: SERVICE ENV NAME...` lines: every service at least once, its servers in order."""
    lines = []
    for view in services:
        head = f"{POOL_PREFIX}{view.name} {view.active_env or '-'}"
        line = head
        for backend in view.servers:
            if len(line) + 1 + len(backend.name) > POOL_LINE_MAX and line != head:
                lines.append(line)
                line = head
            line += " " + backend.name
        lines.append(line)
    return lines


def nginx_str(value: Any) -> str:
    """Quote a value as an nginx string literal (double quotes; backslash, quote and $ escaped)."""
    text = str(value)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ConfigError(f"control character in a value bound for the nginx config: {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "${dollar}") + '"'


def haproxy_str(value: Any) -> str:
    """Quote a value as a HAProxy string argument (double quotes; backslash, quote, $ and # escaped)."""
    text = str(value)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ConfigError(f"control character in a value bound for the HAProxy config: {text!r}")
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("#", "\\#")
    return f'"{out}"'


def duration_ms(seconds: float) -> str:
    """Seconds -> `1500ms`, a unit both nginx and HAProxy accept."""
    return f"{max(1, round(seconds * 1000))}ms"


def make_environment(templates_dir: Path | None = None) -> Any:
    """The Jinja2 environment: `templates_dir` (if any) searched first, then the built-in templates."""
    import jinja2

    loaders: list[jinja2.BaseLoader] = []
    if templates_dir is not None:
        if not templates_dir.is_dir():  # checked at load too; this catches one removed since
            raise ConfigError(f"templates_dir: no such directory: {templates_dir}")
        loaders.append(jinja2.FileSystemLoader(str(templates_dir)))
    loaders.append(jinja2.FunctionLoader(_builtin_template))
    env = jinja2.Environment(
        loader=jinja2.ChoiceLoader(loaders),
        bytecode_cache=_bytecode_cache(jinja2),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["nginx_str"] = nginx_str
    env.filters["haproxy_str"] = haproxy_str
    env.filters["ms"] = duration_ms
    return env


def _builtin_template(name: str) -> tuple[str, str, Callable[[], bool]] | None:
    """A built-in template read through importlib.resources, so it is found in a checkout, an installed
    wheel or a zip alike; None when there is no such template."""
    from importlib.resources import files

    from jinja2.loaders import split_template_path  # refuses `..`

    resource = files(BUILTIN_TEMPLATES)
    for piece in split_template_path(name):
        resource = resource.joinpath(piece)
    if not resource.is_file():
        return None
    # Never stale: every render builds a fresh environment, and the bytecode cache keys on the source.
    return resource.read_text(encoding="utf-8"), str(resource), lambda: True


def _bytecode_cache(jinja2: Any) -> Any:
    """Compiled templates cached in ~/.cache/lbgen (compiling costs more than the rest of a render);
    none when that directory cannot be written. Entries are keyed by template source, so edits show."""
    import os

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    directory = os.path.join(base, "lbgen", "jinja")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        if not os.access(directory, os.W_OK):
            return None
    except OSError:
        return None
    return jinja2.FileSystemBytecodeCache(directory)


def render(config: Config, pools: Sequence[Pool]) -> Rendered:
    """Render the config for `config.proxy.kind`; identical input gives byte-identical output."""
    import jinja2

    kind = kind_named(config.proxy.kind)
    by_name = {p.service: p for p in pools}
    warnings: list[str] = []
    views = []
    for name, service in config.services.items():
        pool = by_name.get(name) or Pool(service=name, active_env=None)
        servers, left_out = kind.servers(service.algorithm, pool)
        warnings.extend(left_out)
        views.append(ServiceView(name=name, config=service, active_env=pool.active_env, servers=servers))
    ports = []
    for port in sorted({v.config.listen for v in views}):
        on_port = tuple(v for v in views if v.config.listen == port)
        default = next((v for v in on_port if not v.config.hosts), None)
        ports.append(PortView(port=port, services=on_port, default=default))
    active = {v.name: v.active_env for v in views}
    meta = {"generation": GENERATION_PLACEHOLDER, "v": 2}
    named = "".join(f" {v.name}={v.active_env or '-'}" for v in views[:STATUS_BODY_SERVICES])
    if len(views) > STATUS_BODY_SERVICES:
        named += f" (+{len(views) - STATUS_BODY_SERVICES} more services)"
    context = {
        "lbgen_version": __version__,
        "config": config,
        "proxy": config.proxy,
        "services": views,
        "ports": ports,
        "meta_comment": "\n".join([META_PREFIX + json.dumps(meta, sort_keys=True, separators=(",", ":")),
                                    *pool_lines(views)]),
        "status_body": "lbgen generation=" + GENERATION_PLACEHOLDER + named,
        "generation": GENERATION_PLACEHOLDER,
    }
    env = make_environment(config.templates_dir)
    template_name = kind.template_name
    try:
        text = env.get_template(template_name).render(context)
    except jinja2.TemplateError as e:
        lineno = getattr(e, "lineno", None)  # syntax errors carry one
        where = f" line {lineno}" if lineno else ""
        raise ConfigError(f"template {template_name}{where}: {e.message or e}") from e
    generation = hashlib.sha256(text.encode()).hexdigest()[:12]
    return Rendered(text=text.replace(GENERATION_PLACEHOLDER, generation), generation=generation,
                    active=active, warnings=tuple(warnings))
