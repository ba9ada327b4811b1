"""OpenMetrics text (what Prometheus scrapes, and what a node_exporter textfile collector
reads): `dbtool cluster --format openmetrics`, `dbtool pool-status --format openmetrics`.

Written by hand rather than with prometheus_client: a few gauges per run do not justify a
dependency, and the format is small (families with `# TYPE`, `# UNIT`, `# HELP`, samples
with escaped label values, `# EOF`). The tests parse it with prometheus_client's parser.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
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
