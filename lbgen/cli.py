"""click commands: parse options, build the core object, call one method, print the result.
The only module that exits; every LbgenError becomes `Error: ...` on stderr and its exit code.

Heavy imports (docker, requests, jinja2, yaml) happen inside the commands, so --help stays fast.
"""
from __future__ import annotations

import sys
from typing import Any, Callable

import click

from lbgen import __version__
from lbgen.cli_canary import canary_arguments, canary_options
from lbgen.cli_common import (DURATION, EXIT_CODES_HELP, LbgenGroup, _app, _checks_option, _config,
                              _print_json)

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
@click.option("--main", "main", is_flag=True, help="nginx: print the main-context file (proxy.main_config_path: "
              "worker_shutdown_timeout, the stream {} of TCP services) instead.")
@click.pass_context
def render(ctx: click.Context, service: str | None, envs: tuple[str, ...], output: str | None,
           inventory_path: str | None, main: bool) -> None:
    """Print the config that would go live. Changes nothing.

    \b
    Examples:
      lbgen render > nginx.conf
      lbgen render --env web=green | diff - live.conf
      lbgen render --from-file examples/inventory.yaml      # no Docker needed
      lbgen render --main                                   # nginx: the stream {} of TCP services
    """
    import dataclasses

    from lbgen.app import Lbgen, parse_env_overrides
    from lbgen.errors import UsageError

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
    if main and rendered.main is None:
        raise UsageError(f"--main: {config.proxy.kind} has no main-context file (lbgen writes its whole config)")
    text = rendered.main if main and rendered.main is not None else rendered.text
    if output:
        from pathlib import Path

        Path(output).write_text(text)
        click.echo(f"wrote {output} generation={rendered.generation}", err=True)
    else:
        click.echo(text, nl=False)


@cli.command()
@click.option("--dry-run", is_flag=True, help="Print a unified diff of live vs rendered; change nothing.")
@click.option("--lock-timeout", type=DURATION, default="30s", envvar="LBGEN_LOCK_TIMEOUT", show_default=True,
              help="How long to wait for another lbgen's lock.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object: changed, generation, via "
              "(reload or runtime), timings (seconds per phase and total), notes, warnings (with --dry-run also "
              "the diff).")
@_checks_option
@click.pass_context
def apply(ctx: click.Context, dry_run: bool, lock_timeout: float, as_json: bool) -> None:
    """Discover, render, validate with the proxy's own binary, and hot-reload.

    A byte-identical config is left alone (no write, no reload). An invalid config never goes live. On
    HAProxy a change of backends' servers only goes live through its runtime API, without a reload
    (via=runtime).

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
        click.echo(f"applied generation={result.generation} via={result.via or 'reload'} took={took:.2f}s")
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
@canary_options
@click.pass_context
def switch(ctx: click.Context, /, env: str, **options: Any) -> None:
    """Move a service's traffic to ENV once ENV passes its health checks; verify; roll back on failure.

    \b
    Examples:
      lbgen switch --env green
      lbgen switch --service web --env green --timeout 2m --min-healthy 75%
      lbgen switch --env green --dry-run
      lbgen switch --env green --weight 10          # canary: 10% to green, blue stays active
      lbgen switch --env green --weight 50 --sticky cookie   # a client stays on the env that served it
      lbgen switch --env green --steps 10,25,50,100 --step-time 1m --max-error-rate 1%
      lbgen switch --env green --analysis 2m --max-error-rate 1%
    """
    extra = canary_arguments(options)
    _run_switch(ctx, lambda app, **kw: app.switch(env, **kw, **extra), **options)


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
        split = f" weight={result.weight}%" if result.weight is not None else ""
        click.echo(f"unchanged service={result.service} env={result.to_env}{split} (already live)")
        return
    if result.outcome is Outcome.CANARY_ENDED:
        click.echo(f"canary ended service={result.service} {result.to_env}=100% generation={result.generation} "
                   f"took={result.timings.get('total', 0):.2f}s")
        return
    if result.weight is not None:
        click.echo(f"canary service={result.service} {result.to_env}={result.weight}% "
                   f"{result.from_env}={100 - result.weight}% generation={result.generation} "
                   f"took={result.timings.get('total', 0):.2f}s")
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
    app = _app(ctx)
    report = app.status()
    if as_json:
        _print_json(report.to_dict())
        return
    proxy = report.proxy
    sync = "in sync" if proxy.in_sync else "OUT OF SYNC (run lbgen apply)"
    click.echo(f"proxy {proxy.container} ({proxy.kind}): serving generation "
               f"{proxy.served_generation or '?'}{' (runtime API)' if proxy.served_via == 'runtime' else ''}, "
               f"config {sync}")
    for svc in report.services:
        last = svc.last_switch
        when = f", last switch {last.time} {last.from_env}->{last.to_env}" if last else ""
        assumed = "" if svc.active_recorded else " (assumed: no switch on record, default_env)"
        click.echo(f"{svc.name}: active={svc.active_env or '-'}{assumed} previous={svc.previous_env or '-'}{when}")
        if svc.canary:
            sticky = (f"; sticky: a client keeps the env that served it (cookie lbgen_{svc.name}, epoch "
                      f"{svc.canary.epoch})" if svc.canary.sticky else "")
            click.echo(f"  CANARY: {svc.canary.env} gets {svc.canary.weight}% of requests, "
                       f"{svc.active_env or '-'} {100 - svc.canary.weight}%{sticky}")
        if svc.analysis:
            a = svc.analysis
            what = f"step {a.weight}%" if a.weight < 100 else "after the switch"
            click.echo(f"  ANALYSIS {a.time} of {a.env} {what}: {'pass' if a.passed else 'FAILED, traffic put back'}: "
                       + "; ".join(f.describe() for f in a.figures))
        tcp = svc.name in app.config.services and app.config.services[svc.name].mode == "tcp"
        if svc.maintenance and tcp:
            click.echo(f"  MAINTENANCE since {svc.maintenance.since}: new connections refused")
        elif svc.maintenance:
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
        weight = f" {e.weight}%" if e.weight is not None else ""
        click.echo(f"{e.time} {e.service} {e.from_env or '-'} -> {e.to_env} {e.outcome}{weight} "
                   f"{e.duration:.2f}s {e.user}@{e.host}" + (" forced" if e.forced else "")
                   + (f" ({e.detail})" if e.detail else ""))


from lbgen.cli_maintenance import maintenance as _maintenance  # noqa: E402
from lbgen.cli_monitor import doctor as _doctor, health as _health, watch as _watch  # noqa: E402

cli.add_command(_maintenance)
cli.add_command(_health)
cli.add_command(_doctor)
cli.add_command(_watch)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="lbgen")


if __name__ == "__main__":
    main()
