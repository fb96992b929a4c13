"""Users and groups of a proxy container, looked up in its own /etc/passwd and /etc/group (who owns lbgen's
TLS keys there). Imports lbgen.engine and lbgen.errors only."""
from __future__ import annotations

from lbgen.engine import Engine
from lbgen.errors import ProxyError


def lookup(engine: Engine, container: str, table: str, name: str) -> tuple[int, int]:
    """A user (/etc/passwd: uid, gid) or group (/etc/group: gid, gid) by name or number."""
    if name.isdigit():
        return int(name), int(name) if table == "/etc/group" else _primary_gid(engine, container, int(name))
    data = engine.read_file(container, table) or b""
    for line in data.decode("utf-8", errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
            gid = fields[3] if table == "/etc/passwd" and len(fields) > 3 and fields[3].isdigit() else fields[2]
            return int(fields[2]), int(gid)
    raise ProxyError(f"proxy container {container} runs as {name!r}, which its {table} does not name; "
                     f"lbgen cannot give it its TLS key; the previous config is still live")


def _primary_gid(engine: Engine, container: str, uid: int) -> int:
    if uid == 0:
        return 0
    data = engine.read_file(container, "/etc/passwd") or b""
    for line in data.decode("utf-8", errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) >= 4 and fields[2] == str(uid) and fields[3].isdigit():
            return int(fields[3])
    return uid
