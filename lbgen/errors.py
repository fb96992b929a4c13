"""The one error tree and the one table of exit codes: every failure lbgen reports is an LbgenError whose
class names what happened and carries an ExitCode; the CLI's help text reads the same enum."""
from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    """lbgen's exit codes (`lbgen health` and `lbgen doctor` use the monitoring-plugin codes instead)."""

    OK = 0
    UNEXPECTED = 1
    USAGE = 2
    CONFIG = 3
    DOCKER = 4
    GATE = 5
    RELOAD = 6
    LOCK = 7
    ANALYSIS = 8

    @property
    def meaning(self) -> str:
        return _MEANINGS[self]


_MEANINGS = {
    ExitCode.OK: "ok",
    ExitCode.UNEXPECTED: "unexpected error",
    ExitCode.USAGE: "usage error",
    ExitCode.CONFIG: "invalid configuration (lbgen.yaml, inventory, template, the proxy rejected the "
                     "rendered config, or the config path is on a read-only mount)",
    ExitCode.DOCKER: "Docker unreachable, a named container missing, or Docker could not write the config "
                     "into the proxy (the previous config is still live)",
    ExitCode.GATE: "health gate refused a switch",
    ExitCode.RELOAD: "reload or verification failed; the previous config was restored",
    ExitCode.LOCK: "another lbgen holds the lock",
    ExitCode.ANALYSIS: "analysis failed (canary or post-promotion): all traffic was put back on the previous env",
}


class LbgenError(Exception):
    """Base of every error lbgen reports to a user; `exit_code` is what the CLI exits with."""

    exit_code: ExitCode = ExitCode.UNEXPECTED


class UsageError(LbgenError):
    exit_code = ExitCode.USAGE


class ConfigError(LbgenError):
    """lbgen.yaml, an inventory or a template is invalid."""

    exit_code = ExitCode.CONFIG


class ProxyRejectedConfig(ConfigError):
    """The proxy's own validator (nginx -t, haproxy -c) refused the rendered config."""


class CertificateError(ConfigError):
    """A TLS certificate or key lbgen.yaml names is missing, unreadable, expired, or they do not match."""


class NoBackends(ConfigError):
    """A switch target env has no backends."""


class ConfigReadOnly(ConfigError):
    """The proxy's config path is on a read-only mount (or a read-only container filesystem); refused
    before anything changed."""


class DockerUnavailable(LbgenError):
    exit_code = ExitCode.DOCKER


class ConfigWriteFailed(DockerUnavailable):
    """Writing the config into the proxy container failed for a reason other than a read-only mount (the
    daemon refused the upload, the disk is full, a copy or rename inside the container failed). Nothing
    was swapped in: the previous config is still live."""


class ContainerNotFound(DockerUnavailable):
    """A named container (the proxy, usually) does not exist or is not running."""


class HealthGateFailed(LbgenError):
    exit_code = ExitCode.GATE


class ReloadFailed(LbgenError):
    """Install, reload or verification failed; the previous config was restored."""

    exit_code = ExitCode.RELOAD


class ProxyError(ReloadFailed):
    """The proxy cannot be driven safely (not in master-worker mode, read-only filesystem, ...)."""


class RuntimeApiError(ProxyError):
    """HAProxy's runtime API could not be reached, or the worker's servers differ from the file after a
    runtime change; the caller reloads instead (never seen by a user as an exit)."""


class LockHeld(LbgenError):
    exit_code = ExitCode.LOCK


class AnalysisFailed(LbgenError):
    """The analysis of a canary step (or of the window after a full switch) found a breach; all traffic
    was put back on the previous env."""

    exit_code = ExitCode.ANALYSIS
