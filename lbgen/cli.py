"""click commands: parse options, build the core object, call one method, print the result.
The only module that exits; every LbgenError becomes `Error: ...` on stderr and its exit code.

Heavy imports (docker, requests, jinja2, yaml) happen inside the commands, so --help stays fast.
"""
from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any, Callable

import click

from lbgen import __version__
from lbgen.errors import ExitCode, LbgenError

if TYPE_CHECKING:
    from lbgen.app import Lbgen
    from lbgen.config import Config

EXIT_CODES_HELP = "\n".join(f"  {int(code)}  {code.meaning}" for code in ExitCode)


class LbgenGroup(click.Group):
    """Turns lbgen's errors into one line on stderr and the documented exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except LbgenError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(e.exit_code)
        except KeyboardInterrupt:
            click.echo("Error: interrupted", err=True)
            ctx.exit(130)


class Duration(click.ParamType):
    name = "duration"

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        from lbgen.config import parse_duration

        if isinstance(value, float):
            return value
        try:
            return parse_duration(value)
        except ValueError as e:
            self.fail(str(e), param, ctx)


DURATION = Duration()


def _app(ctx: click.Context) -> Lbgen:
    from lbgen.app import Lbgen

    return Lbgen(_config(ctx))


def _config(ctx: click.Context) -> Config:
    import dataclasses

    from lbgen.config import find_config_path, load_config

    config = load_config(find_config_path(ctx.obj["config"]))
    checks = ctx.obj.get("checks")
    return dataclasses.replace(config, checks=checks) if checks else config


def _store_checks(ctx: click.Context, param: Any, value: str | None) -> None:
    if value:
        ctx.ensure_object(dict)["checks"] = value


def _checks_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--checks", type=click.Choice(["auto", "engine", "direct"], case_sensitive=False),
                        envvar="LBGEN_CHECKS", expose_value=False, callback=_store_checks, is_eager=True,
                        help="Reach backends and the proxy's status listener directly, or through the engine "
                             "from inside the proxy container (for a runner off the app network); "
                             "overrides lbgen.yaml's checks [env: LBGEN_CHECKS; default: auto, see "
                             "docs/remote.md]")(f)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True))


@click.group(cls=LbgenGroup, epilog=f"Exit codes (every command):\n\n\b\n{EXIT_CODES_HELP}",
             context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="lbgen")
@click.option("-c", "--config", "config", metavar="PATH", envvar="LBGEN_CONFIG",
              help="lbgen.yaml to use [env: LBGEN_CONFIG; default: ./lbgen.yaml]")
@click.pass_context
def cli(ctx: click.Context, config: str | None) -> None:
    """Put Docker containers behind nginx or HAProxy and switch traffic between releases.

    \b
    Example:
      lbgen discover                 # what is routable on the network
      lbgen apply                    # render, validate and hot-reload the proxy
      lbgen switch --env green       # health-gated blue-green cutover
    """
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


@cli.command()
@click.option("--service", "-s", metavar="S", envvar="LBGEN_SERVICE", help="Only this service.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_context
def discover(ctx: click.Context, service: str | None, as_json: bool) -> None:
    """List the backends found, the network each was found on (and for Swarm tasks their service and
    node); skipped containers and tasks, and why, go to stderr.

    \b
    Example:
      lbgen discover --service web --json | jq '.[].address'
    """
    app = _app(ctx)
    if service is not None:
        app.config.service(service)
    inventory = app.discover()
    backends = [b for b in inventory.backends if service is None or b.service == service]
    if as_json:
        _print_json([b.to_dict() for b in backends])
        return
    for b in backends:
        flags = ",".join(f for f in ("backup" if b.backup else "",
                                     f"docker-health={b.docker_health}" if b.docker_health else "") if f)
        where = f"\tnetwork={b.network}" if b.network else ""
        if b.swarm_service:
            where += f"\tswarm-service={b.swarm_service}" + (f"\tnode={b.node}" if b.node else "")
        click.echo(f"{b.service}\t{b.env or '-'}\t{b.name}\t{b.endpoint}\tweight={b.weight}{where}"
                   + (f"\t{flags}" if flags else ""))


@cli.command()
@click.option("--service", "-s", metavar="S", envvar="LBGEN_SERVICE",
              help="Render only this service.")
@click.option("--env", "envs", metavar="SERVICE=ENV", multiple=True,
              help="Render as if ENV were active for SERVICE (repeatable).")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write to FILE instead of stdout.")
@click.option("--from-file", "inventory_path", metavar="INVENTORY", type=click.Path(dir_okay=False),
              help="Take backends from a YAML/JSON inventory instead of Docker (never contacts Docker).")
@click.pass_context
def render(ctx: click.Context, service: str | None, envs: tuple[str, ...], output: str | None,
           inventory_path: str | None) -> None:
    """Print the config that would go live. Changes nothing.

    \b
    Examples:
      lbgen render > nginx.conf
      lbgen render --env web=green | diff - live.conf
      lbgen render --from-file examples/inventory.yaml      # no Docker needed
    """
    import dataclasses

    from lbgen.app import Lbgen, parse_env_overrides

    config = _config(ctx)
    if service is not None:
        config = dataclasses.replace(config, services={service: config.service(service)})
    overrides = parse_env_overrides(envs)
    app = Lbgen(config)
    inventory = None
    if inventory_path is not None:
        from lbgen.sources.inventory import FileSource

        inventory = FileSource(inventory_path).discover()
    rendered = app.render(overrides, inventory=inventory)
    if output:
        from pathlib import Path

        Path(output).write_text(rendered.text)
        click.echo(f"wrote {output} generation={rendered.generation}", err=True)
    else:
        click.echo(rendered.text, nl=False)


@cli.command()
@click.option("--dry-run", is_flag=True, help="Print a unified diff of live vs rendered; change nothing.")
@click.option("--lock-timeout", type=DURATION, default="30s", envvar="LBGEN_LOCK_TIMEOUT", show_default=True,
              help="How long to wait for another lbgen's lock.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: changed, generation, timings "
              "(seconds per phase and total), notes, warnings (with --dry-run also the diff).")
@_checks_option
@click.pass_context
def apply(ctx: click.Context, dry_run: bool, lock_timeout: float, as_json: bool) -> None:
    """Discover, render, validate with the proxy's own binary, and hot-reload.

    A byte-identical config is left alone (no write, no reload). An invalid config never goes live.

    \b
    Example:
      lbgen apply --dry-run && lbgen apply
    """
    app = _app(ctx)
    result = app.apply(dry_run=dry_run, lock_wait=lock_timeout)
    if as_json:
        _print_json(result.to_dict())
        return
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    if dry_run:
        click.echo(result.diff, nl=False)
        click.echo("no change" if not result.changed else f"would apply generation={result.generation}", err=True)
    elif result.changed:
        took = result.timings.get("total", 0.0)
        click.echo(f"applied generation={result.generation} took={took:.2f}s")
    else:
        click.echo(f"unchanged generation={result.generation}")


def _switch_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--stop-old", is_flag=True, help="Stop the old env's containers after the switch.")(f)
    f = click.option("--drain", type=DURATION, default=None, help="With --stop-old: seconds to let in-flight "
                     "requests finish before stopping the old env.")(f)
    f = click.option("--lock-timeout", type=DURATION, default="30s", envvar="LBGEN_LOCK_TIMEOUT",
                     show_default=True, help="How long to wait for another lbgen's lock.")(f)
    f = click.option("--json", "as_json", is_flag=True, help="Print one JSON result object.")(f)
    f = click.option("--dry-run", is_flag=True, help="Show the plan, the gate's view and the diff; change nothing.")(f)
    f = click.option("--force", is_flag=True, help="Skip the health gate (loudly).")(f)
    f = click.option("--min-healthy", metavar="N|P%", envvar="LBGEN_MIN_HEALTHY",
                     help="How many target backends must pass (default: all).")(f)
    f = click.option("--timeout", type=DURATION, default="60s", envvar="LBGEN_TIMEOUT", show_default=True,
                     help="How long the health gate may wait.")(f)
    f = click.option("--service", "-s", metavar="S", envvar="LBGEN_SERVICE",
                     help="The service (optional when lbgen.yaml has one).")(f)
    return _checks_option(f)


@cli.command()
@click.option("--env", "env", required=True, metavar="ENV", help="The env to move traffic to.")
@_switch_options
@click.pass_context
def switch(ctx: click.Context, /, env: str, **options: Any) -> None:
    """Move a service's traffic to ENV once ENV passes its health checks; verify; roll back on failure.

    \b
    Examples:
      lbgen switch --env green
      lbgen switch --service web --env green --timeout 2m --min-healthy 75%
      lbgen switch --env green --dry-run
    """
    _run_switch(ctx, lambda app, **kw: app.switch(env, **kw), **options)


@cli.command()
@_switch_options
@click.pass_context
def rollback(ctx: click.Context, /, **options: Any) -> None:
    """Switch a service back to its previous env, through the same health gate.

    \b
    Example:
      lbgen rollback --service web
    """
    _run_switch(ctx, lambda app, **kw: app.rollback(**kw), **options)


def _run_switch(ctx: click.Context, call: Callable[..., Any], service: str | None, timeout: float,
                min_healthy: str | None, force: bool, dry_run: bool, as_json: bool, lock_timeout: float,
                drain: float | None, stop_old: bool) -> None:
    from lbgen.errors import UsageError
    from lbgen.model import Outcome
    from lbgen.progress import GateDisplay

    if drain is not None and not stop_old:
        raise UsageError("--drain goes with --stop-old")
    app = _app(ctx)
    if force:
        click.echo("warning: --force: switching without the health gate", err=True)
    display = GateDisplay(sys.stderr)
    result = call(app, service=service, timeout=timeout, min_healthy=min_healthy, force=force,
                  dry_run=dry_run, on_progress=display.update, lock_wait=lock_timeout, stop_old=stop_old,
                  drain=drain or 0.0)
    display.finish()
    if as_json:
        _print_json(result.to_dict())
        return
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    if result.outcome is Outcome.DRY_RUN:
        click.echo(f"plan: service={result.service} from={result.from_env} to={result.to_env}")
        gate = result.gate
        if gate is not None:
            click.echo(f"gate: {len(gate.healthy)}/{gate.required} required healthy now"
                       + (f" ({gate.summary()})" if gate.failing else ""))
        click.echo(result.diff, nl=False)
        return
    if result.outcome is Outcome.UNCHANGED:
        click.echo(f"unchanged service={result.service} env={result.to_env} (already live)")
        return
    t = result.timings
    install = sum(t.get(k, 0.0) for k in ("render", "deliver", "validate"))
    click.echo(f"switched service={result.service} from={result.from_env} to={result.to_env} "
               f"generation={result.generation} took={t.get('total', 0):.2f}s "
               f"(gate={t.get('gate', 0):.2f}s render+install+validate={install:.2f}s "
               f"reload={t.get('reload', 0):.2f}s verify={t.get('verify', 0):.2f}s)")
    for name in result.stopped or ():
        click.echo(f"stopped {name}", err=True)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_checks_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Per service: active and previous env, last switch, each backend's health; and whether the live
    proxy config matches what lbgen would render now.

    \b
    Example:
      lbgen status --json | jq '.services.web.active_env'
    """
    report = _app(ctx).status()
    if as_json:
        _print_json(report.to_dict())
        return
    proxy = report.proxy
    sync = "in sync" if proxy.in_sync else "OUT OF SYNC (run lbgen apply)"
    click.echo(f"proxy {proxy.container} ({proxy.kind}): serving generation "
               f"{proxy.served_generation or '?'}, config {sync}")
    for svc in report.services:
        last = svc.last_switch
        when = f", last switch {last.time} {last.from_env}->{last.to_env}" if last else ""
        assumed = "" if svc.active_recorded else " (assumed: no switch on record, default_env)"
        click.echo(f"{svc.name}: active={svc.active_env or '-'}{assumed} previous={svc.previous_env or '-'}{when}")
        if svc.maintenance:
            click.echo(f"  MAINTENANCE since {svc.maintenance.since}: 503 {svc.maintenance.message!r} "
                       f"(Retry-After {svc.maintenance.retry_after}s)")
        for row in svc.backends:
            b = row.backend
            mark = "routed" if row.routed else "idle"
            click.echo(f"  {b.env or '-':<8} {b.name:<24} {b.address}:{b.port:<6} "
                       f"{'healthy' if row.healthy else 'UNHEALTHY'} ({row.detail}) {mark}")
        for d in svc.drift:
            click.echo(f"  DRIFT: {d.describe()} (run lbgen apply)")


@cli.command()
@click.option("--service", "-s", metavar="S", envvar="LBGEN_SERVICE", help="Only this service.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@click.pass_context
def history(ctx: click.Context, service: str | None, as_json: bool) -> None:
    """The recorded switches and maintenance on/off, newest first.

    \b
    Example:
      lbgen history --service web
    """
    entries = _app(ctx).history(service)
    if as_json:
        _print_json([e.to_dict() for e in entries])
        return
    for e in entries:
        click.echo(f"{e.time} {e.service} {e.from_env or '-'} -> {e.to_env} {e.outcome} "
                   f"{e.duration:.2f}s {e.user}@{e.host}" + (" forced" if e.forced else ""))


class PluginCommand(click.Command):
    """A command that speaks the monitoring-plugin convention even for a bad command line: UNKNOWN, exit 3."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            click.echo(f"LBGEN UNKNOWN - {e.format_message()}")
            ctx.exit(3)
            raise  # unreachable: ctx.exit raises


@cli.command(cls=PluginCommand, epilog="Exit codes (monitoring-plugin convention, NOT lbgen's usual ones):\n\n"
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


@cli.command(cls=PluginCommand, epilog="Exit codes (monitoring-plugin convention, as `lbgen health`):\n\n"
             "\b\n  0  OK        every precondition holds\n"
             "  1  WARNING   lbgen works, but something needs a look (a skipped container, a service without backends)\n"
             "  2  CRITICAL  something lbgen needs is missing (each CRITICAL line says the fix)\n"
             "  3  UNKNOWN   bad command line or lbgen.yaml")
@click.option("--json", "as_json", is_flag=True, help="Print the checks as one JSON object.")
@click.pass_context
def doctor(ctx: click.Context, as_json: bool) -> None:
    """Check every precondition of lbgen on this set-up, trying what can be tried (never changing
    anything): Docker, the proxy container and its kind, graceful reload, the network, the config path's
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


@cli.command()
@click.option("--interval", type=DURATION, default=None, envvar="LBGEN_INTERVAL",
              help="Check every service this often (the pass of `lbgen health --apply`). Default: each "
              "service at its own health.interval.")
@click.option("--debounce", type=Debounce(), default="100ms:1s", envvar="LBGEN_DEBOUNCE", show_default=True,
              metavar="MIN[:MAX]", help="Apply after MIN without events, at most MAX after the first of a "
              "burst; during a long burst at most one reload per MAX.")
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


from lbgen.cli_maintenance import maintenance as _maintenance  # noqa: E402  (it imports helpers from here)

cli.add_command(_maintenance)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="lbgen")


if __name__ == "__main__":
    main()
