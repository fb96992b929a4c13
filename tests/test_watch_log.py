"""Watch's event log: one key=value line or JSON object per event, each warning once."""
from __future__ import annotations

import io
import json

from lbgen.events import event, warning
from lbgen.watch.log import EventLog


def test_event_log_text_and_json():
    out = io.StringIO()
    log = EventLog(out)
    log("apply", service="web", reason="container-start", backends=4, took="0.21s", error=None)
    log("apply-failed", error='nginx: [emerg] "x" directive')
    log.emit(warning("skipped container a: not running"))
    log.emit(warning("skipped container a: not running"))
    log.emit(event("lock-recovered", proxy="edge"))
    assert out.getvalue().splitlines() == [
        "event=apply service=web reason=container-start backends=4 took=0.21s",
        'event=apply-failed error="nginx: [emerg] \\"x\\" directive"',
        'event=warning message="skipped container a: not running"',
        "event=lock-recovered proxy=edge",
    ]
    out = io.StringIO()
    EventLog(out, "json", wall=lambda: 1700000000.25)("apply", service="web", backends=4)
    assert json.loads(out.getvalue()) == {"time": "2023-11-14T22:13:20.250Z", "event": "apply", "service": "web",
                                          "backends": 4}

