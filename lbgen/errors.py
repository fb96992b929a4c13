"""The one error tree: every failure lbgen reports is an LbgenError carrying its exit code."""
from __future__ import annotations


class LbgenError(Exception):
    """Base of every error lbgen reports to a user; `exit_code` is what the CLI exits with."""

    exit_code = 1


class UsageError(LbgenError):
    exit_code = 2


class ConfigError(LbgenError):
    """lbgen.yaml, an inventory or a template is invalid."""

    exit_code = 3


class ProxyRejectedConfig(ConfigError):
    """The proxy's own validator (nginx -t, haproxy -c) refused the rendered config."""


class NoBackends(ConfigError):
    """A switch target env has no backends."""


class DockerUnavailable(LbgenError):
    exit_code = 4


class ContainerNotFound(DockerUnavailable):
    """A named container (the proxy, usually) does not exist or is not running."""


class HealthGateFailed(LbgenError):
    exit_code = 5


class ReloadFailed(LbgenError):
    """Install, reload or verification failed; the previous config was restored."""

    exit_code = 6


class ProxyError(ReloadFailed):
    """The proxy cannot be driven safely (not in master-worker mode, read-only filesystem, ...)."""


class LockHeld(LbgenError):
    exit_code = 7


EXIT_CODES = {
    0: "ok",
    1: "unexpected error",
    2: "usage error",
    3: "invalid configuration (lbgen.yaml, inventory, template, or the proxy rejected the rendered config)",
    4: "Docker unreachable, or a named container missing",
    5: "health gate refused a switch",
    6: "reload or verification failed; the previous config was restored",
    7: "another lbgen holds the lock",
}
