"""TLS certificates as lbgen handles them: read a PEM chain and its key, check that they parse, belong
together and are in date, and read the dates and names a report needs. Imports lbgen.errors only.

The pair is checked by Python's own OpenSSL binding (`ssl.SSLContext.load_cert_chain`, the same check
nginx and HAProxy make); the dates and names come from a small DER walk below, since the standard library
reads them only through private API and they are two fields of a fixed structure. Key bytes are held
only to be delivered: no repr, log line or message ever shows them.
"""
from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from lbgen.errors import CertificateError

PEM_CERT_RE = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", re.S)
PEM_KEY_RE = re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----")
_SAN_OID = bytes([0x55, 0x1D, 0x11])  # 2.5.29.17 subjectAltName
_CN_OID = bytes([0x55, 0x04, 0x03])  # 2.5.4.3 commonName
DAY = 86400.0


@dataclass(frozen=True)
class CertInfo:
    """What lbgen reads of a PEM chain: the validity of its leaf, the earliest end of any certificate in
    it (an expired intermediate breaks clients as surely as an expired leaf), and the leaf's DNS names."""

    not_before: float
    not_after: float  # the earliest notAfter in the chain, Unix time
    names: tuple[str, ...]  # subjectAltName DNS names, else the common name

    def days_left(self, now: float) -> float:
        return (self.not_after - now) / DAY

    def covers(self, host: str) -> bool:
        """Whether a client asking for `host` (or, for `*.x`, any name under x) accepts this certificate."""
        host = host.lower()
        for name in (n.lower() for n in self.names):
            if name == host:
                return True
            if name.startswith("*.") and "." in host and not host.startswith("*.") \
                    and host.split(".", 1)[1] == name[2:]:
                return True
        return False


@dataclass(frozen=True)
class CertPair:
    """A checked certificate chain and its key. `digest` (over both) names the files they go live as, so a
    changed certificate or key is a changed config text, and the text never holds key bytes."""

    cert_path: str  # as lbgen.yaml wrote it, for messages
    key_path: str
    cert: bytes = field(repr=False)
    key: bytes = field(repr=False)
    info: CertInfo
    digest: str


def load_pair(cert_file: Path, key_file: Path, *, shown_cert: str, shown_key: str,
              where: str, now: float | None = None) -> CertPair:
    """Read and check a certificate chain and its key; CertificateError naming `where` (the lbgen.yaml key
    path) and the file when either is missing, unreadable, unparsable or expired, or they do not match."""
    now = time.time() if now is None else now
    cert = _read(cert_file, f"{where}.cert", shown_cert)
    key = _read(key_file, f"{where}.key", shown_key)
    if PEM_KEY_RE.search(cert):
        raise CertificateError(f"{where}.cert: {shown_cert}: holds a private key; give the key in tls.key "
                               f"only (the certificate file is delivered world-readable)")
    try:
        info = cert_info(cert)
    except ValueError as e:
        raise CertificateError(f"{where}.cert: {shown_cert}: {e}") from None
    if info.not_after <= now:
        raise CertificateError(f"{where}.cert: {shown_cert}: certificate expired on {_date(info.not_after)}")
    if not PEM_KEY_RE.search(key):
        raise CertificateError(f"{where}.key: {shown_key}: no PEM private key in it")
    _check_match(cert_file, key_file, f"{where}.key: {shown_key}", shown_cert)
    digest = hashlib.sha256(hashlib.sha256(cert).digest() + hashlib.sha256(key).digest()).hexdigest()[:16]
    return CertPair(shown_cert, shown_key, cert, key, info, digest)


def cert_info(pem: bytes) -> CertInfo:
    """Dates and names of a PEM chain (its first certificate is the leaf); ValueError when none parses."""
    blocks = PEM_CERT_RE.findall(pem)
    if not blocks:
        raise ValueError("no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)")
    infos = []
    for i, block in enumerate(blocks):
        try:
            der = base64.b64decode(b"".join(block.split()), validate=True)
            infos.append(_parse_der(der))
        except (ValueError, binascii.Error, IndexError) as e:
            which = "the certificate" if i == 0 else f"certificate {i + 1} of the chain"
            raise ValueError(f"{which} does not parse ({e or 'truncated'})") from None
    leaf = infos[0]
    return CertInfo(leaf.not_before, min(i.not_after for i in infos), leaf.names)


def _read(path: Path, key_path: str, shown: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CertificateError(f"{key_path}: {shown}: no such file") from None
    except IsADirectoryError:
        raise CertificateError(f"{key_path}: {shown}: is a directory") from None
    except OSError as e:
        raise CertificateError(f"{key_path}: {shown}: cannot read: {e.strerror or e}") from None


def _no_password() -> bytes:
    raise ValueError("encrypted")


def _check_match(cert_file: Path, key_file: Path, key_where: str, shown_cert: str) -> None:
    """The check nginx and HAProxy make at load: OpenSSL loads both and compares the public keys."""
    import ssl  # here: a config without TLS never loads it

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        context.load_cert_chain(str(cert_file), str(key_file), password=_no_password)
    except ValueError:
        raise CertificateError(f"{key_where}: the key is encrypted; give an unencrypted key "
                               f"(readable by the proxy without a passphrase)") from None
    except ssl.SSLError as e:
        reason = getattr(e, "reason", None) or ""
        if reason == "KEY_VALUES_MISMATCH":
            raise CertificateError(f"{key_where}: the key does not match the certificate {shown_cert}") from None
        if reason in ("EE_KEY_TOO_SMALL", "CA_MD_TOO_WEAK", "CA_KEY_TOO_SMALL"):
            raise CertificateError(f"{key_where}: OpenSSL refuses the pair ({reason.lower().replace('_', ' ')})") from None
        raise CertificateError(f"{key_where}: not a private key OpenSSL can load "
                               f"({reason.lower().replace('_', ' ') or 'unparsable'})") from None


def _date(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


# --- a DER walk: just enough of X.509 for validity and names ---------------------------------------

def _tlv(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, start of contents, end of contents) of the element at `pos`."""
    if pos + 2 > end:
        raise ValueError("truncated")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        n = length & 0x7F
        if not 1 <= n <= 4 or pos + n > end:
            raise ValueError("bad length")
        length = int.from_bytes(data[pos:pos + n], "big")
        pos += n
    if pos + length > end:
        raise ValueError("truncated")
    return tag, pos, pos + length


def _children(data: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    pos = start
    while pos < end:
        tag, s, e = _tlv(data, pos, end)
        yield tag, s, e
        pos = e


def _time(data: bytes, tag: int, s: int, e: int) -> float:
    text = data[s:e].decode("ascii")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ
        year = int(text[:2])
        text = str(1900 + year if year >= 50 else 2000 + year) + text[2:]
    elif tag != 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        raise ValueError("bad validity time")
    if not re.fullmatch(r"[0-9]{14}Z", text):
        raise ValueError(f"unsupported time {text!r}")
    parts = [int(text[i:j]) for i, j in ((0, 4), (4, 6), (6, 8), (8, 10), (10, 12), (12, 14))]
    return float(calendar.timegm((*parts, 0, 0, 0)))


def _parse_der(der: bytes) -> CertInfo:
    tag, s, e = _tlv(der, 0, len(der))
    if tag != 0x30:
        raise ValueError("not a certificate")
    tag, s, e = next(_children(der, s, e))  # tbsCertificate
    fields = list(_children(der, s, e))
    if fields and fields[0][0] == 0xA0:  # [0] version
        fields = fields[1:]
    if len(fields) < 6:
        raise ValueError("truncated")
    validity, subject = fields[3], fields[4]
    times = list(_children(der, validity[1], validity[2]))
    if len(times) != 2:
        raise ValueError("bad validity")
    not_before, not_after = (_time(der, *t) for t in times)
    names = _san_names(der, fields[6:]) or _common_names(der, subject)
    return CertInfo(not_before, not_after, tuple(names))


def _san_names(der: bytes, rest: list[tuple[int, int, int]]) -> list[str]:
    for tag, s, e in rest:
        if tag != 0xA3:  # [3] extensions
            continue
        _, s, e = _tlv(der, s, e)
        for _, es, ee in _children(der, s, e):
            parts = list(_children(der, es, ee))
            if parts and parts[0][0] == 0x06 and der[parts[0][1]:parts[0][2]] == _SAN_OID:
                _, os_, oe = parts[-1]
                _, ns, ne = _tlv(der, os_, oe)
                return [der[a:b].decode("ascii") for t, a, b in _children(der, ns, ne) if t == 0x82]
    return []


def _common_names(der: bytes, subject: tuple[int, int, int]) -> list[str]:
    names = []
    for _, rs, re_ in _children(der, subject[1], subject[2]):  # SET
        for _, as_, ae in _children(der, rs, re_):  # SEQUENCE {oid, value}
            parts = list(_children(der, as_, ae))
            if len(parts) == 2 and der[parts[0][1]:parts[0][2]] == _CN_OID:
                names.append(der[parts[1][1]:parts[1][2]].decode("utf-8", errors="replace"))
    return names
