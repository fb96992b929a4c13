"""Certificate expiry as `lbgen health` reports it: the certificates the live config serves (its
`# lbgen-tls:` lines, so nothing is read from the proxy's disk) and their days left against tls.warn_days."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from lbgen.config import Config
from lbgen.model import CRITICAL, OK, STATUS_NAMES, WARNING
from lbgen.render import parse_meta

CRITICAL_DAYS = 3


@dataclass(frozen=True)
class CertHealth:
    """A certificate the live config serves, and how long it has left."""

    service: str
    file: str  # as named in the proxy (the digest of certificate and key)
    not_after: float
    days_left: float
    warn_days: int = 14

    @property
    def status(self) -> int:
        if self.days_left < CRITICAL_DAYS:
            return CRITICAL
        return WARNING if self.days_left < self.warn_days else OK

    def describe(self) -> str:
        when = "expired" if self.days_left <= 0 else f"expires in {self.days_left:.1f} days"
        return (f"{self.service}: certificate {when} ({_iso(self.not_after)}), {STATUS_NAMES[self.status]}"
                f" under {self.warn_days} days WARNING, under 3 CRITICAL")

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "not_after": _iso(self.not_after), "days_left": round(self.days_left, 2),
                "warn_days": self.warn_days, "status": STATUS_NAMES[self.status]}


def served_certs(config: Config, live: str | None, now: float) -> tuple[CertHealth, ...]:
    """The certificates the live config serves (its `# lbgen-tls:` lines), for the services in `config`."""
    meta = parse_meta(live or "")
    out = []
    for cert in meta.tls if meta else ():
        svc = config.services.get(cert.service)
        if svc is None:
            continue
        warn = svc.tls.warn_days if svc.tls else 14
        out.append(CertHealth(cert.service, cert.file, cert.not_after, (cert.not_after - now) / 86400.0, warn))
    return tuple(out)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
