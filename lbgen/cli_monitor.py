"""`lbgen health`, `lbgen doctor` and `lbgen watch`: the monitoring commands (registered on the group in
cli.py). Parse, call the library, print."""
from __future__ import annotations

import json
from typing import Any

import click

from lbgen.cli_common import DURATION, PluginCommand, _app, _checks_option, _config
from lbgen.errors import LbgenError


@click.command(cls=PluginCommand, epilog="Exit codes (monitoring-plugin convention, NOT lbgen's usual ones):\n\n"
             "\b\n  0  OK        every backend of every active env passed\n"
             "  1  WARNING   some backends failed; every service still has a healthy one\n"
             "  2  CRITICAL  a service has no healthy backend\n"
             "  3  UNKNOWN   could not check: Docker unreachable, bad config or command line, --apply failed")
@click.option("--service", "-s", metavar="S", envvar="LBGEN_SERVICE", help="Only this service.")
@click.option("--json", "as_json", is_flag=True, help="Print the same as one JSON object.")
@click.option("--apply", "apply_", is_flag=True,
              help="Eject failing backends from the live config and re-admit recovered ones, with hysteresis "
                   "(the service's health.fall / health.rise passes); never empties a pool.")
@click.option("--textfile", metavar="PATH", type=click.Path(dir_okay=False),
              help="Also write the figures in Prometheus text format to PATH (atomically), for "
                   "node_exporter's textfile collector.")
@click.option("--lock-timeout", type=DURATION, default="30s", envvar="LBGEN_LOCK_TIMEOUT", show_default=True,
              help="With --apply: how long to wait for another lbgen's lock.")
@_checks_option
@click.pass_context
def health(ctx: click.Context, service: str | None, as_json: bool, apply_: bool, textfile: str | None,
           lock_timeout: float) -> None:
    """One pass of active HTTP checks against every backend of each service's active env, as a
    monitoring plugin (Nagios, Icinga, Sensu, check_mk): a summary line with performance data, then
    details. Checks run concurrently: a pass takes about one health timeout.

    \b
    Examples:
      lbgen health                              # as a Nagios/Icinga check
      lbgen health --apply --textfile /var/lib/node_exporter/lbgen.prom   # from cron
      lbgen health --json | jq '.services.web.unhealthy'
    """
    from lbgen.report import HealthReport

    try:
        report = _app(ctx).health(service, apply=apply_, lock_wait=lock_timeout)
    except LbgenError as e:
        report = HealthReport.unknown(str(e))
    if textfile:
        try:
            report.write_textfile(textfile)
        except OSError as e:
            import dataclasses

            report = dataclasses.replace(report, error=f"cannot write --textfile {textfile}: {e.strerror or e}")
    click.echo(report.to_json() if as_json else report.nagios())
    ctx.exit(report.exit_code)


@click.command(cls=PluginCommand, epilog="Exit codes (monitoring-plugin convention, as `lbgen health`):\n\n"
             "\b\n  0  OK        every precondition holds\n"
             "  1  WARNING   lbgen works, but something needs a look (a skipped container, a service without backends)\n"
             "  2  CRITICAL  something lbgen needs is missing (each CRITICAL line says the fix)\n"
             "  3  UNKNOWN   bad command line or lbgen.yaml")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as one JSON object.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check every precondition of lbgen on this set-up, trying what can be tried (never changing
    anything): Docker (and the engine proxy.docker_host names), the proxy container (or a Swarm service's
    one running task) and its kind, graceful reload, each network lbgen.yaml lists, the config path's
    mount and writability, the exec user, the state, the status listener, each service's backends, the
    template override directory. One line per check: OK, WARNING or CRITICAL and the fix.

    \b
    Example:
      lbgen doctor
      lbgen doctor --json | jq '.checks[] | select(.status != "OK")'
    """
    try:
        report = _app(ctx).doctor()
    except LbgenError as e:
        if as_json:
            click.echo(json.dumps({"status": "UNKNOWN", "exit_code": 3, "error": str(e), "checks": []}, indent=1))
        else:
            click.echo(f"LBGEN DOCTOR UNKNOWN - {e}")
        ctx.exit(3)
        return
    click.echo(report.to_json() if as_json else report.text())
    ctx.exit(report.exit_code)


class Debounce(click.ParamType):
    name = "min[:max]"

    def convert(self, value: Any, param: Any, ctx: Any) -> tuple[float, float]:
        from lbgen.watch.debounce import parse_debounce

        if isinstance(value, tuple):
            return value
        try:
            return parse_debounce(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


@click.command()
@click.option("--interval", type=DURATION, default=None, envvar="LBGEN_INTERVAL",
              help="Check every service this often (the pass of `lbgen health --apply`). Default: each "
              "service at its own health.interval.")
@click.option("--debounce", type=Debounce(), default="100ms:1s", envvar="LBGEN_DEBOUNCE", show_default=True,
              metavar="MIN[:MAX]", help="The first event after MAX of quiet is applied at once; within a "
              "burst, after MIN without events, at most MAX after its first; during a long burst at most one "
              "reload per MAX.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", envvar="LBGEN_LOG_FORMAT",
              show_default=True, help="One key=value line per action, or one JSON object per line.")
@click.option("--metrics-port", type=click.IntRange(0, 65535), default=None, envvar="LBGEN_METRICS_PORT",
              help="Serve Prometheus metrics on this port at /metrics.")
@click.option("--metrics-addr", default="127.0.0.1", envvar="LBGEN_METRICS_ADDR", show_default=True,
              help="The address --metrics-port listens on (0.0.0.0 inside a container).")
@click.option("--lock-timeout", type=DURATION, default="30s", envvar="LBGEN_LOCK_TIMEOUT", show_default=True,
              help="How long an apply waits for another lbgen's lock.")
@_checks_option
@click.pass_context
def watch(ctx: click.Context, interval: float | None, debounce: tuple[float, float], log_format: str,
          metrics_port: int | None, metrics_addr: str, lock_timeout: float) -> None:
    """Follow Docker events and keep the proxy in line: apply when labelled containers start, stop or
    change health (bursts debounced), take a stopping backend out of its pool before it is gone, and check
    each service's health at its health.interval (or every --interval). Survives the Docker daemon
    restarting.

    SIGHUP re-reads lbgen.yaml; SIGTERM or SIGINT stop it cleanly (exit 0). Logs go to stderr.

    \b
    Example:
      lbgen watch --metrics-port 9181
    """
    from lbgen.core import Core
    from lbgen.watch import run_watch

    def load_app(log: Any, engine: Any) -> Any:
        return Core(_config(ctx), engine, log=log.emit)

    def engine_factory() -> Any:
        from lbgen.docker_engine import DockerEngine

        return DockerEngine()

    run_watch(load_app, engine_factory, interval=interval, debounce=debounce, log_format=log_format,
              metrics_port=metrics_port, metrics_addr=metrics_addr, lock_wait=lock_timeout)
