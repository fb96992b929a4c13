"""The checks lbgen.yaml's values pass (and the inventory file's): each takes the parsed YAML value and
returns it typed, or raises ValueError saying what was expected; the config parser adds the key path."""
from __future__ import annotations

import re
from typing import Any, Callable

from lbgen import grammar

DURATION_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(value: object) -> float:
    """`500ms`, `2s`, `1m`, `1h` or a number of seconds -> seconds (float)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration (e.g. 500ms, 2s, 1m)")
    if isinstance(value, (int, float)):
        try:
            seconds = float(value)
        except OverflowError:  # an int past 1e308
            seconds = float("inf")
    else:
        match = DURATION_RE.fullmatch(str(value).strip()) if isinstance(value, str) else None
        if not match:
            raise ValueError(f"{grammar._show(value)} is not a duration (e.g. 500ms, 2s, 1m)")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not 0 < seconds <= 86400:
        raise ValueError(f"{grammar._show(value)} is out of range (more than 0, at most 24h)")
    return seconds



def kind_of(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def string(what: str, pattern: str | None = None) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if not isinstance(value, str) or not value or (pattern and not re.fullmatch(pattern, value)):
            raise ValueError(f"expected {what}, got {grammar._show(value)}")
        return value
    return check


network_name = string("a Docker network name or id", r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def networks(value: Any) -> tuple[str, ...]:
    """`network:` as one name or a non-empty list of distinct names."""
    if not isinstance(value, list):
        return (network_name(value),)
    if not value:
        raise ValueError("expected a Docker network name or a non-empty list of them, got an empty list")
    names = list_of(network_name)(value)
    for i, name in enumerate(names):
        if name in names[:i]:
            raise ValueError(f"item {i}: network {name} is listed twice")
    return tuple(names)


def docker_host(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"(unix|tcp|ssh|npipe)://[A-Za-z0-9._~:/@\[\]%-]{1,255}", value):
        raise ValueError(f"expected a Docker host URL (unix://PATH, tcp://HOST:PORT, ssh://USER@HOST), "
                         f"got {grammar._show(value)}")
    return value


def abs_path(value: Any) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"/[A-Za-z0-9._/-]{1,255}", value) or "/../" in value + "/":
        raise ValueError(f"expected an absolute path of [A-Za-z0-9._/-], got {grammar._show(value)}")
    return value


def choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if value not in options:
            raise ValueError(f"{grammar._show(value)} is not one of: {', '.join(options)}")
        return str(value)
    return check


def int_range(low: int, high: int) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"expected an integer {low}-{high}, got {grammar._show(value)}")
        return value
    return check


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {grammar._show(value)}")
    return value


def paths(value: Any) -> tuple[str, ...]:
    """`paths:` a non-empty list of distinct path prefixes."""
    paths = list_of(grammar.route_path)(value)
    if not paths:
        raise ValueError("expected at least one path prefix (leave paths out for /)")
    for i, p in enumerate(paths):
        if p in paths[:i]:
            raise ValueError(f"item {i}: path {p} is listed twice")
    return tuple(paths)


def int_port(value: Any) -> int:
    if isinstance(value, str):
        raise ValueError(f"expected a port number 1-65535, got {grammar._show(value)}")
    return grammar.port(value)


def list_of(check: Callable[[Any], Any]) -> Callable[[Any], list[Any]]:
    def inner(value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise ValueError(f"expected a list, got {kind_of(value)}")
        out = []
        for i, item in enumerate(value):
            try:
                out.append(check(item))
            except ValueError as e:
                raise ValueError(f"item {i}: {e}") from None
        return out
    return inner


def distinct(check: Callable[[Any], Any], what: str) -> Callable[[Any], list[Any]]:
    """A list whose items each pass `check` and none is given twice."""
    def inner(value: Any) -> list[Any]:
        items = list_of(check)(value)
        for i, item in enumerate(items):
            if item in items[:i]:
                raise ValueError(f"item {i}: {what} {item} is listed twice")
        return items
    return inner
