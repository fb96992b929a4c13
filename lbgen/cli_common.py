"""What every click command shares: the group's error handling (one `Error:` line, the documented exit
code), the duration type, building `Lbgen` from the command line, JSON output, the plugin convention."""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

import click

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
        from lbgen.config_values import parse_duration

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


class PluginCommand(click.Command):
    """A command that speaks the monitoring-plugin convention even for a bad command line: UNKNOWN, exit 3."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as e:
            click.echo(f"LBGEN UNKNOWN - {e.format_message()}")
            ctx.exit(3)
            raise  # unreachable: ctx.exit raises
