"""`lbgen doctor`'s check of nginx's stream module, shown when lbgen.yaml has TCP services on nginx: built in
(`nginx -V` says `--with-stream`), or dynamic (`--with-stream=dynamic`) and loaded by a `load_module` that
nginx reads before it includes lbgen's main-context file (which holds the `stream {}`)."""
from __future__ import annotations

import re
from typing import Iterator, NamedTuple

from lbgen.core import Core
from lbgen.engine import ROOT
from lbgen.model import CRITICAL, OK
from lbgen.proxies.base import ConfigDump

_LOAD_STREAM = re.compile(r"^\s*load_module\s+\S*ngx_stream_module\.so\s*;", re.M)


class Verdict(NamedTuple):
    """One doctor line (lbgen.doctor.Check's fields)."""

    name: str
    status: int
    message: str
    fix: str = ""


def stream_module_checks(core: Core, dump: ConfigDump) -> Iterator[Verdict]:
    tcp = core.tcp_services()
    path = core.config.proxy.main_config_path
    if not tcp or path is None or dump.error is not None:
        return
    result = core.proxy_engine.exec(core.proxy.ref(), ["nginx", "-V"], user=ROOT)
    args = result.output.split()
    install = ("use an nginx with the stream module: the official nginx image has it built in; Debian/Ubuntu: "
               "apt-get install libnginx-mod-stream (it adds modules-enabled/50-mod-stream.conf, which "
               "Debian's nginx.conf loads)")
    if "--with-stream" in args:
        yield Verdict("stream-module", OK, f"nginx has the stream module built in (--with-stream), for "
                      f"{', '.join(tcp)}")
        return
    if "--with-stream=dynamic" not in args:
        yield Verdict("stream-module", CRITICAL, f"nginx in {core.proxy.name} has no stream module (`nginx -V` "
                      f"shows no --with-stream), which TCP services ({', '.join(tcp)}) need", install)
        return
    loader = next((f for f, text in dump.files.items() if _LOAD_STREAM.search(text)), None)
    if loader is None:
        yield Verdict("stream-module", CRITICAL, f"nginx in {core.proxy.name} has the stream module only as a "
                      f"dynamic module (--with-stream=dynamic) and does not load it; TCP services "
                      f"({', '.join(tcp)}) need it",
                      install + "; or add `load_module modules/ngx_stream_module.so;` at the top of nginx.conf")
        return
    if _included_before(dump, path, loader):
        directive = core.proxy.kind.include_directive(path)
        yield Verdict("stream-module", CRITICAL, f"nginx.conf includes {path} before it loads the stream module "
                      f"({loader}), so nginx does not know `stream` there",
                      f"move `{directive}` below the load_module lines (e.g. make it the last line of nginx.conf)")
        return
    yield Verdict("stream-module", OK, f"nginx loads the stream module ({loader}), for {', '.join(tcp)}")


def _included_before(dump: ConfigDump, path: str, loader: str) -> bool:
    """Whether the top file (nginx.conf) includes `path` on a line before the one that loads the stream
    module (the load_module itself, or the include that reads `loader`)."""
    if not dump.files:
        return False
    top_path, top = next(iter(dump.files.items()))
    lines = [line.split("#", 1)[0] for line in top.splitlines()]

    def first(target: str) -> int | None:
        for i, line in enumerate(lines):
            if "include" in line and ConfigDump({top_path: line}).includes(target):
                return i
        return None

    include_at = first(path)
    if include_at is None:
        return False
    if loader == top_path:
        load_at = next((i for i, line in enumerate(lines) if _LOAD_STREAM.search(line)), None)
    else:
        load_at = first(loader)
    return load_at is not None and include_at < load_at
