"""One module per proxy kind, and the registry of kinds: `KINDS` and `kind_named()`.

Importing this package loads the kind modules only (never the driver), so config.py can validate
`proxy.kind` and take its default config path from here. A new kind is a module beside nginx.py, one
line in KINDS, and a template.
"""
from __future__ import annotations

from typing import Mapping

from lbgen.errors import ConfigError
from lbgen.proxies.base import ProxyKind
from lbgen.proxies.haproxy import HAPROXY
from lbgen.proxies.nginx import NGINX

KINDS: Mapping[str, ProxyKind] = {kind.name: kind for kind in (NGINX, HAPROXY)}


def kind_named(name: str) -> ProxyKind:
    """The kind named in lbgen.yaml's proxy.kind; ConfigError when there is none."""
    try:
        return KINDS[name]
    except KeyError:
        raise ConfigError(f"unknown proxy kind {name!r} (known: {', '.join(KINDS)})") from None
