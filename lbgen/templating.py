"""The Jinja2 environment the templates render in: a `templates_dir` override searched first, then the
built-in templates (package data: the top-level templates/ in a checkout), and the filters they use.

Every value a template prints has passed lbgen.grammar; the `nginx_str` / `haproxy_str` filters quote
anything textual once more for the target syntax, so a template bug cannot become an injection.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping

from lbgen.config_routes import strip_regex
from lbgen.errors import ConfigError

BUILTIN_TEMPLATES = "lbgen.templates"  # package data (top-level templates/ in a checkout)


def nginx_str(value: Any) -> str:
    """Quote a value as an nginx string literal (double quotes; backslash and quote escaped, `$` written as
    `${lbgen_dollar}`, a variable the template defines only when some text needs it)."""
    text = str(value)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ConfigError(f"control character in a value bound for the nginx config: {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "${lbgen_dollar}") + '"'


def haproxy_str(value: Any) -> str:
    """Quote a value as a HAProxy string argument (double quotes; backslash, quote, $ and # escaped)."""
    text = str(value)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise ConfigError(f"control character in a value bound for the HAProxy config: {text!r}")
    out = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$").replace("#", "\\#")
    return f'"{out}"'


def indent_lines(text: str, width: int) -> str:
    """Each line of a snippet indented by `width` spaces (so no line of it starts at column 0)."""
    import textwrap

    lines = textwrap.dedent(text.expandtabs(4)).strip("\n").splitlines()
    return "\n".join(" " * width + line.rstrip() if line.strip() else "" for line in lines)


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
    env.filters["strip_regex"] = strip_regex
    env.filters["indent_lines"] = indent_lines
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


def render_template(env: Any, name: str, context: Mapping[str, Any]) -> str:
    import jinja2

    try:
        text: str = env.get_template(name).render(context)
    except jinja2.TemplateError as e:
        lineno = getattr(e, "lineno", None)  # syntax errors carry one
        where = f" line {lineno}" if lineno else ""
        raise ConfigError(f"template {name}{where}: {e.message or e}") from e
    return text
