"""`lbgen switch`'s progressive-delivery options (--weight, --steps, --analysis and the thresholds): parsed
here into the arguments of `Lbgen.switch`, and the analysed windows printed on stderr."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import click

from lbgen.cli_common import DURATION

if TYPE_CHECKING:
    from lbgen.progressive import Window

CANARY_KEYS = ("weight", "steps", "step_time", "analysis", "max_error_rate", "min_requests", "on_low_traffic",
               "max_p95", "sticky")


def canary_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option("--sticky", type=click.Choice(["cookie"]), default=None,
                     help="With --weight/--steps: a client stays on the env that served it (a cookie, "
                     "lbgen_SERVICE, names it) while the weight does not go down; a lower weight, a rollback "
                     "or a breach lets go of it. HTTP services only.")(f)
    f = click.option("--max-p95", type=DURATION, default=None, metavar="D",
                     help="Analysis: the analysed env's p95 latency must stay at or under D (e.g. 300ms).")(f)
    f = click.option("--on-low-traffic", type=click.Choice(["pass", "fail"]), default="pass", show_default=True,
                     help="Analysis: a window with fewer than --min-requests responses passes (with a warning) "
                     "or fails.")(f)
    f = click.option("--min-requests", type=click.IntRange(1), default=20, show_default=True,
                     help="Analysis: responses needed before the error rate counts.")(f)
    f = click.option("--max-error-rate", metavar="P%", default="1%", show_default=True,
                     help="Analysis: the most 5xx responses the analysed env may send, e.g. 1% or 0.5%.")(f)
    f = click.option("--analysis", type=DURATION, default=None, metavar="D",
                     help="After a full switch, analyse the new env for D; on a breach, back to the previous "
                     "env (exit 8).")(f)
    f = click.option("--step-time", type=DURATION, default="1m", show_default=True,
                     help="With --steps: how long each step is analysed before the next.")(f)
    f = click.option("--steps", metavar="N,N,...", default=None,
                     help="Canary steps in percent, e.g. 10,25,50,100 (100 promotes); each analysed for "
                     "--step-time; on a breach all traffic back on the active env (exit 8).")(f)
    f = click.option("--weight", type=click.IntRange(1, 99), default=None, metavar="N",
                     help="Canary: send N% (1-99) of the service's requests to ENV, the rest to the active "
                     "env, which stays active. `switch --env ENV` without it promotes.")(f)
    return f


def canary_arguments(options: dict[str, Any]) -> dict[str, Any]:
    """Pop the progressive-delivery options out of the switch command's `options`; Lbgen.switch's keywords."""
    from lbgen.analysis import Thresholds, parse_percent, parse_steps

    values = {key: options.pop(key) for key in CANARY_KEYS}
    args: dict[str, Any] = {"weight": values["weight"], "analysis": values["analysis"], "sticky": values["sticky"]}
    if values["steps"] is not None:
        args["steps"] = parse_steps(values["steps"])
        args["step_time"] = values["step_time"]
    if values["steps"] is not None or values["analysis"] is not None:
        args["thresholds"] = Thresholds(max_error_rate=parse_percent(values["max_error_rate"]),
                                        min_requests=values["min_requests"],
                                        on_low_traffic=values["on_low_traffic"], max_p95=values["max_p95"])
        args["on_window"] = print_window
    return args


def print_window(window: Window) -> None:
    figures = "; ".join(f.describe() for f in window.verdict.figures)
    what = f"step {window.weight}%" if window.weight < 100 else "after the switch"
    low = " (not enough traffic)" if window.verdict.low_traffic else ""
    click.echo(f"analysis {what}: pass{low} over {window.seconds:.0f}s: {figures}", err=True)
