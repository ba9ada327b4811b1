"""OpenMetrics text (what Prometheus scrapes, and what a node_exporter textfile collector
reads): `dbtool cluster --format openmetrics`, `dbtool pool-status --format openmetrics`.

Written by hand rather than with prometheus_client: a few gauges per run do not justify a
dependency, and the format is small (families with `# TYPE`, `# UNIT`, `# HELP`, samples
with escaped label values, `# EOF`). The tests parse it with prometheus_client's parser.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

Labels = Mapping[str, str]


@dataclass
class Family:
    """One metric family: a name (ending in `_<unit>` when it has one), its type and help,
    and its samples (labels, value); a sample of value None is left out (not known)."""

    name: str
    help: str
    kind: str = "gauge"  # gauge, counter, info, stateset: what OpenMetrics defines
    unit: str = ""
    samples: list[tuple[Labels, float | None]] = field(default_factory=list)

    def add(self, value: float | bool | None, **labels: str | None) -> Family:
        clean = {name: value for name, value in labels.items() if value is not None}
        self.samples.append((clean, None if value is None else float(value)))
        return self


def render(families: Iterable[Family]) -> str:
    """The exposition: every family with at least one known sample, then `# EOF`."""
    lines: list[str] = []
    for family in families:
        known = [(labels, value) for labels, value in family.samples if value is not None]
        if not known:
            continue
        lines.append(f"# TYPE {family.name} {family.kind}")
        if family.unit:
            lines.append(f"# UNIT {family.name} {family.unit}")
        lines.append(f"# HELP {family.name} {_escape(family.help)}")
        suffix = "_total" if family.kind == "counter" else ""
        for labels, value in known:
            lines.append(f"{family.name}{suffix}{_labels(labels)} {_number(value)}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def _labels(labels: Labels) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in labels.items()) + "}"


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float | None) -> str:
    assert value is not None
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


CONTENT_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def serve(listen: str, exposition: Callable[[], str]) -> None:
    """`--listen HOST:PORT`: answer GET /metrics with a fresh `exposition()` until Ctrl-C
    (one request at a time, in this thread: each scrape is one reading). A database that
    does not answer is a 503 with the reason, and the next scrape tries again."""
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from dbtool.errors import DatabaseUnavailableError, DbtoolError, UsageError
    from dbtool.render import console as output

    host, _, port = listen.rpartition(":")

    class Scrape(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the name http.server calls
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404, "only /metrics is here")
                return
            try:
                body, status, kind = exposition().encode(), 200, CONTENT_TYPE
            except DbtoolError as exc:  # one line, as on the command line; never a traceback
                status = 503 if isinstance(exc, DatabaseUnavailableError) else 500
                body, kind = exc.message.encode(), "text/plain; charset=utf-8"
            except Exception as exc:
                body, status = f"unexpected {type(exc).__name__}".encode(), 500
                kind = "text/plain; charset=utf-8"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:  # scrapes are not news
            return

    try:
        server = HTTPServer((host.strip("[]") or "127.0.0.1", int(port)), Scrape)
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"cannot listen on {listen}: {getattr(exc, 'strerror', None) or exc}"
        ) from None
    with server:
        output.note(f"serving OpenMetrics on http://{listen}/metrics (Ctrl-C to stop)")
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            output.note("stopped")
