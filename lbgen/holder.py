"""The state holder: a never-started container per proxy, named `lbgen-state-<proxy name>`, whose filesystem
keeps lbgen's record on the Docker engine whatever happens to the proxy container. Only this module
knows its image, its name, its label and its two-slot file format.

A write never touches the newest valid slot: it goes to the other one, with a higher sequence number
and a checksum; a read takes the newest slot whose checksum holds. A writer killed mid-upload leaves at
worst a torn slot, and the previous record stays readable.
"""
from __future__ import annotations

import hashlib
import io
import re
import tarfile
from dataclasses import dataclass

from lbgen.engine import Engine
from lbgen.errors import ContainerNotFound, ProxyError

# A local image with one empty directory and nothing else, made with the engine's import (no registry, no
# pull, ~0 bytes); the holder never runs, so it needs no binary. It pins no proxy image against `docker rmi`.
IMAGE = "lbgen-state:1"
LABEL = "lbgen.state.proxy"
PREFIX = "lbgen-state-"
DIRECTORY = "/lbgen-state"
SLOTS = (f"{DIRECTORY}/slot-0", f"{DIRECTORY}/slot-1")
_HEADER = re.compile(r"lbgen-state v1 seq=(\d+) sha256=([0-9a-f]{64})\n")


def holder_name(proxy: str) -> str:
    return PREFIX + proxy


def image_rootfs() -> bytes:
    """The holder image's whole filesystem: the directory the slots live in."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        member = tarfile.TarInfo(DIRECTORY.lstrip("/"))
        member.type = tarfile.DIRTYPE
        member.mode = 0o700
        tar.addfile(member)
    return buffer.getvalue()


@dataclass(frozen=True)
class Slot:
    """One valid record: its sequence number, which slot file holds it, and the text it guards."""

    seq: int
    path: str
    body: str


def encode(seq: int, body: str) -> bytes:
    data = body.encode()
    return f"lbgen-state v1 seq={seq} sha256={hashlib.sha256(data).hexdigest()}\n".encode() + data


def decode(path: str, raw: bytes | None) -> Slot | None:
    """The slot's record, or None when it is absent, torn or not lbgen's."""
    if raw is None:
        return None
    head, sep, data = raw.partition(b"\n")
    match = _HEADER.fullmatch(head.decode("ascii", errors="replace") + "\n") if sep else None
    if match is None or hashlib.sha256(data).hexdigest() != match.group(2):
        return None
    return Slot(int(match.group(1)), path, data.decode("utf-8", errors="replace"))


class Holder:
    """The holder container of one proxy (by the proxy's configured name)."""

    def __init__(self, engine: Engine, proxy: str) -> None:
        self.engine = engine
        self.proxy = proxy
        self.name = holder_name(proxy)

    def read(self) -> Slot | None:
        """The newest valid record; None when the holder holds none. ContainerNotFound when there is no holder."""
        files = self.engine.read_files(self.name, DIRECTORY)  # both slots in one round trip
        slots = [decode(path, files.get(path.rsplit("/", 1)[1])) for path in SLOTS]
        valid = [s for s in slots if s is not None]
        return max(valid, key=lambda s: s.seq) if valid else None

    def write(self, body: str) -> int:
        """Write `body` into the slot that does not hold the newest record; its sequence number. Creates
        the holder (and its image) the first time. The caller holds the proxy's lock."""
        try:
            newest = self.read()
        except ContainerNotFound:
            self.create()
            newest = None
        seq = newest.seq + 1 if newest else 1
        path = SLOTS[1] if newest is not None and newest.path == SLOTS[0] else SLOTS[0]
        try:
            self.engine.put_file(self.name, path, encode(seq, body), 0o600)
        except OSError as e:
            raise ProxyError(f"cannot write lbgen's state into container {self.name}: {e}") from e
        return seq

    def create(self) -> None:
        self.engine.ensure_image(IMAGE, image_rootfs())
        if self.engine.create_marker(self.name, IMAGE, {LABEL: self.proxy}) is None:
            info = self.engine.get_container(self.name)  # created by another lbgen a moment ago, or not ours
            if info.labels.get(LABEL) != self.proxy:
                raise ProxyError(f"container {self.name} exists but is not lbgen's state holder for proxy "
                                 f"{self.proxy} (no label {LABEL}={self.proxy}); rename or remove it")
