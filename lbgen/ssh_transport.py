"""DOCKER_HOST=ssh://: HTTP to the remote engine through the system `ssh` running `docker system dial-stdio`,
in batch mode, with its connections kept open and reused and ssh's stderr kept for the error message."""
from __future__ import annotations

import subprocess
import socket
import tempfile
from typing import IO, Any
from urllib.parse import urlsplit

import requests.adapters
import urllib3.connection
import urllib3.connectionpool

DIAL = "docker system dial-stdio"


def ssh_argv(where: str) -> list[str]:
    """The ssh command for `ssh://[user@]host[:port]`: ssh's own config, agent and known_hosts apply;
    BatchMode so that a pipeline never waits at a password or host-key prompt."""
    parts = urlsplit(where)
    if parts.scheme != "ssh" or not parts.hostname:
        raise ValueError(f"expected ssh://[USER@]HOST[:PORT], got {where!r}")
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]
    if parts.username:
        argv += ["-l", parts.username]
    if parts.port:
        argv += ["-p", str(parts.port)]
    return argv + ["--", parts.hostname, DIAL]


class SshFailed(ConnectionError):
    """ssh ended before the engine answered; `stderr` is what ssh (or the remote docker CLI) said."""

    def __init__(self, code: int | None, stderr: str) -> None:
        last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
        super().__init__(f"ssh exited {code}: {last}" if code is not None else f"ssh: {last}")
        self.code = code
        self.stderr = stderr


class SshConnection(urllib3.connection.HTTPConnection):
    """One HTTP connection = one ssh process, whose stdin/stdout is one end of a socket pair."""

    def __init__(self, argv: list[str], timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.argv = argv
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr: IO[bytes] | None = None
        self.ended: SshFailed | None = None  # set by close() when ssh exited non-zero or said something

    def connect(self) -> None:
        ours, theirs = socket.socketpair()
        self.stderr = tempfile.TemporaryFile()
        try:
            # A session of its own: Ctrl-C reaches lbgen, which then ends ssh itself (close()).
            self.proc = subprocess.Popen(self.argv, stdin=theirs.fileno(), stdout=theirs.fileno(), stderr=self.stderr,
                                         start_new_session=True)
        except FileNotFoundError as e:
            ours.close()
            raise SshFailed(None, "no ssh client here (install openssh-client)") from e
        finally:
            theirs.close()
        ours.settimeout(self.timeout if isinstance(self.timeout, (int, float)) else None)
        self.sock = ours

    def failure(self) -> SshFailed | None:
        """What ssh said, once it has ended (http.client closes the connection on an error before the pool
        sees the error, so close() keeps it)."""
        if self.proc is not None:
            self.close()
        return self.ended

    def close(self) -> None:
        super().close()  # our end of the pair: ssh reads EOF, tells the remote, and exits by itself
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            code: int | None = proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self.stderr is not None:
            self.stderr.seek(0)
            said = self.stderr.read().decode("utf-8", errors="replace")
            self.stderr.close()
            self.stderr = None
            if code or said.strip():
                self.ended = SshFailed(code, said)


class SshConnectionPool(urllib3.connectionpool.HTTPConnectionPool):
    def __init__(self, argv: list[str], timeout: float, maxsize: int) -> None:
        super().__init__("localhost", timeout=timeout, maxsize=maxsize)
        self.argv = argv
        self.ssh_timeout = timeout
        self.last_failure: SshFailed | None = None

    def _new_conn(self) -> SshConnection:
        return SshConnection(self.argv, self.ssh_timeout)

    def urlopen(self, method: str, url: str, *args: Any, **kw: Any) -> Any:
        # A failed first request on a fresh ssh: raise what ssh said instead of "connection aborted".
        try:
            return super().urlopen(method, url, *args, **kw)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            failure = self.last_failure
            if failure is not None:
                self.last_failure = None
                raise failure from e
            raise

    def _make_request(self, conn: Any, *args: Any, **kw: Any) -> Any:
        try:
            return super()._make_request(conn, *args, **kw)
        except (urllib3.exceptions.HTTPError, OSError):
            self.last_failure = conn.failure() if isinstance(conn, SshConnection) else None
            raise


class SshAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter for every URL of one docker client: all go to the one ssh:// host."""

    def __init__(self, where: str, timeout: float, maxsize: int = 4) -> None:
        super().__init__()
        self.pool = SshConnectionPool(ssh_argv(where), timeout, maxsize)

    def get_connection(self, url: Any, proxies: Any = None) -> SshConnectionPool:
        return self.pool

    def get_connection_with_tls_context(self, request: Any, verify: Any, proxies: Any = None,
                                        cert: Any = None) -> SshConnectionPool:  # requests >= 2.32.2
        return self.pool

    def close(self) -> None:
        super().close()
        self.pool.close()


def host_port(where: str) -> tuple[str, int | None]:
    from urllib.parse import urlsplit

    parts = urlsplit(where)
    return parts.hostname or where, parts.port


def classify_ssh_error(code: int | None, stderr: str, host: str, port: int | None = None) -> str | None:
    """A short reason from ssh's exit code and stderr; None when ssh and the remote daemon look fine."""
    text = stderr.lower()
    keyscan = f"ssh-keyscan -p {port} {host}" if port else f"ssh-keyscan {host}"
    last = next((line.strip() for line in reversed(stderr.splitlines()) if line.strip()), "")
    if "no ssh client here" in text:
        return last
    if "host key verification failed" in text or "remote host identification has changed" in text:
        return f"ssh host key of {host} is unknown or changed (add it to known_hosts: {keyscan}): {last}"
    if "permission denied" in text or "too many authentication failures" in text:
        return f"ssh authentication to {host} failed (key or agent not accepted): {last}"
    if "could not resolve hostname" in text:
        return f"ssh cannot resolve {host}: {last}"
    if "connection refused" in text and "docker" not in text:
        return f"ssh to {host} refused (no sshd listening): {last}"
    if "timed out" in text and "docker" not in text:
        return f"ssh to {host} timed out: {last}"
    if "command not found" in text or "not found" in text and "docker" in text:
        return f"no docker command on {host} (ssh:// needs the docker CLI there): {last}"
    if "docker" in text or "dial" in text:
        return f"ssh to {host} works but its Docker daemon does not answer: {last}"
    if code == 255:
        return f"ssh to {host} failed: {last or 'exit 255'}"
    if code:
        return f"ssh to {host} ended (exit {code}) before its Docker daemon answered: {last or 'no message'}"
    return None
