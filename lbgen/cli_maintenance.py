"""`lbgen maintenance on|off`: parse, call `Lbgen.maintenance`, print (registered on the group in cli.py)."""
from __future__ import annotations

import click

from lbgen.config_values import parse_duration
from lbgen.errors import UsageError


@click.command()
@click.argument("mode", type=click.Choice(["on", "off"]))
@click.option("--service", "-s", metavar="S", envvar="LBGEN_SERVICE", help="Only this service [default: every service].")
@click.option("--message", metavar="TEXT", help="Body of the 503 (1-200 printable characters).")
@click.option("--retry-after", metavar="DURATION", help="Retry-After of the 503, e.g. 5m [default: 5m].")
@click.option("--lock-timeout", "--lock-wait", "lock_wait", default="30s", envvar="LBGEN_LOCK_TIMEOUT",
              metavar="DURATION", show_default=True,
              help="How long to wait for another lbgen's lock (exit 7 after); --lock-wait is its old name.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def maintenance(ctx: click.Context, mode: str, service: str | None, message: str | None, retry_after: str | None,
                lock_wait: str, as_json: bool) -> None:
    """Answer 503 with a message and Retry-After for a service (or every service), backends untouched,
    until `maintenance off`; it survives apply, switch and watch. Returns once the proxy serves it.
    A TCP service (mode: tcp) refuses new connections instead (no message: there is no HTTP).

    \b
    Examples:
      lbgen maintenance on --service web --message "Back at 10:00 UTC" --retry-after 30m
      lbgen maintenance off --service web
    """
    from lbgen.cli_common import _app, _print_json

    try:
        seconds = parse_duration(retry_after) if retry_after is not None else None
        wait = parse_duration(lock_wait)
    except ValueError as e:
        raise UsageError(f"--retry-after/--lock-timeout: {e}") from None
    result = _app(ctx).maintenance(mode == "on", service, message=message, retry_after=seconds, lock_wait=wait)
    if as_json:
        _print_json(result.to_dict())
        return
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    what = "unchanged (already served)" if not result.changed else f"generation {result.generation} live"
    click.echo(f"maintenance {mode}: {', '.join(result.services)}; {what}")
