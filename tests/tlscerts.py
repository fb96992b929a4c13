"""Certificates for the TLS tests, made with the openssl CLI: a private CA, leaf certificates (a wildcard
among them), an expired one and a key that matches nothing."""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class Leaf:
    cert: Path
    key: Path


def openssl(*args: str, cwd: Path) -> None:
    if shutil.which("openssl") is None:
        pytest.fail("the openssl CLI is not installed; the TLS tests make their certificates with it "
                    "(apt-get install openssl)", pytrace=False)
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"openssl {' '.join(args)}:\n{result.stderr}"


class PrivateCA:
    """A CA in `directory`; `leaf()` signs a certificate for DNS names with `openssl ca`, which takes
    explicit start and end dates (so an already expired certificate can be made)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "index.txt").write_text("")
        (directory / "serial").write_text("1000\n")
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", "ca.key", "-out", "ca.pem", "-days", "30", "-subj", "/CN=lbgen test CA", cwd=directory)
        self.cert = directory / "ca.pem"
        self._n = 0

    def leaf(self, name: str, *dns: str, start: str | None = None, end: str | None = None,
             days: int = 30) -> Leaf:
        self._n += 1
        stem = f"{name}-{self._n}"
        openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", f"{stem}.key",
                "-out", f"{stem}.csr", "-subj", f"/CN={dns[0]}", cwd=self.dir)
        conf = self.dir / f"{stem}.cnf"
        conf.write_text(
            "[ca]\ndefault_ca = lbgen\n[lbgen]\n"
            f"dir = {self.dir}\ndatabase = $dir/index.txt\nserial = $dir/serial\nnew_certs_dir = $dir\n"
            "certificate = $dir/ca.pem\nprivate_key = $dir/ca.key\ndefault_md = sha256\npolicy = any\n"
            "unique_subject = no\ncopy_extensions = none\nx509_extensions = ext\n"
            "[any]\ncommonName = supplied\n"
            "[ext]\nbasicConstraints = CA:false\nkeyUsage = digitalSignature\nextendedKeyUsage = serverAuth\n"
            "subjectAltName = " + ",".join(f"DNS:{d}" for d in dns) + "\n")
        dates = (["-startdate", start] if start else []) + (["-enddate", end] if end else ["-days", str(days)])
        openssl("ca", "-batch", "-notext", "-config", conf.name, "-in", f"{stem}.csr", "-out", f"{stem}.pem",
                *dates, cwd=self.dir)
        return Leaf(self.dir / f"{stem}.pem", self.dir / f"{stem}.key")

    def expired(self, name: str, *dns: str) -> Leaf:
        return self.leaf(name, *dns, start="20200101000000Z", end="20200201000000Z")
