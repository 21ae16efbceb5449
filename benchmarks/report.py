"""Turn the runs into figures: medians per configuration and scenario, delivered against expected, the
targets of the issue as ratios from this run (PASS/FAIL), and the markdown tables."""
from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Optional

__all__ = ["CHANNELS", "expected", "summarize", "targets", "surface_targets", "markdown"]

CHANNELS = ("otlp_spans", "sentry_transactions", "sentry_errors")
_CHANNEL_TITLES = {"otlp_spans": "OTLP spans", "sentry_transactions": "Sentry tx", "sentry_errors": "Sentry errors"}
_MEDIANS = ("cpu_us", "cpu_loop_us", "cpu_sys_us", "wall_us", "rss_mb", "rps", "p50_ms", "p99_ms")


def expected(channels: Iterable[str], scenario: str, served: int, raised: int) -> dict[str, int]:
    """What each channel of a configuration must deliver for ``served`` requests of which ``raised`` failed.

    Every request is one OTLP span and one Sentry transaction when sampled, none when not; every failed
    request is one Sentry error event, sampled or not.
    """
    sampled = scenario != "unsampled"
    out: dict[str, int] = {}
    if "otlp" in channels:
        out["otlp_spans"] = served if sampled else 0
    if "sentry" in channels:
        out["sentry_transactions"] = served if sampled else 0
        out["sentry_errors"] = raised
    return out


def summarize(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One configuration and scenario over its repeats: medians of the figures, sums of what was delivered.

    Each run holds the measured figures, ``channels`` (what the configuration exports) and ``counts``
    (what the sink received during that run).
    """
    first = runs[0]
    summary: dict[str, Any] = {"config": first["config"], "scenario": first["scenario"], "runs": len(runs)}
    for key in _MEDIANS:
        values = [run[key] for run in runs if run.get(key) is not None]
        if values:
            summary[key] = statistics.median(values)
    delivered: dict[str, list[int]] = {}
    reports: Counter[str] = Counter()
    problems = 0
    for run in runs:
        for channel, want in expected(run["channels"], run["scenario"], run["served"], run["raised"]).items():
            got_want = delivered.setdefault(channel, [0, 0])
            got_want[0] += run["counts"][channel]
            got_want[1] += want
        reports.update(run["counts"].get("client_reports", {}))
        problems += run["counts"].get("problems", 0)
    summary["delivered"] = delivered
    summary["client_reports"] = dict(reports)
    summary["sink_problems"] = problems
    summary["note"] = first.get("note", "")
    for key in ("non_2xx", "socket_errors"):
        if key in first:
            summary[key] = sum(run[key] for run in runs)
    return summary


@dataclass
class Target:
    name: str
    value: Optional[float]  # the measured ratio (or difference), None when it could not be measured
    limit: float
    passed: Optional[bool]  # None: not measurable in this run
    detail: str = ""

    def line(self) -> str:
        verdict = {True: "PASS", False: "FAIL", None: "n/a "}[self.passed]
        value = "—" if self.value is None else f"{self.value:.2f}"
        return f"- {verdict} {self.name}: {value} (limit {self.limit:g}){' — ' + self.detail if self.detail else ''}"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "limit": self.limit, "pass": self.passed, "detail": self.detail}


def _get(table: dict[str, dict[str, Any]], config: str, scenario: str, key: str) -> Optional[float]:
    value = table.get(config, {}).get(scenario, {}).get(key)
    return None if value is None else float(value)


def _ratio(
    name: str, top: Optional[float], bottom: Optional[float], limit: float, at_most: bool = True, stretch: float = 0.0
) -> Target:
    if top is None or bottom is None or bottom == 0:
        return Target(name, None, limit, None, "not measured in this run")
    value = top / bottom
    passed = value <= limit if at_most else value >= limit
    detail = ""
    if stretch:
        hit = value <= stretch if at_most else value >= stretch
        detail = f"stretch {stretch:g}: {'met' if hit else 'not met'}"
    return Target(name, value, limit, passed, detail)


def _losses(summaries: Iterable[dict[str, Any]]) -> tuple[int, int, list[str]]:
    lost = total = 0
    where = []
    for summary in summaries:
        for channel, (got, want) in summary["delivered"].items():
            total += want
            if got != want:
                lost += max(0, want - got)
                where.append(f"{summary['scenario']} {_CHANNEL_TITLES[channel]} {got}/{want}")
    return lost, total, where


def targets(
    inprocess: dict[str, dict[str, Any]], by_worker: dict[str, dict[str, Any]], sentry_leg: bool
) -> list[Target]:
    """The issue's targets (issue 18; issue 5's throughput ones kept), from the medians of this run.

    ``by_worker`` holds the gunicorn figures per worker class (``sync``, ``gthread``). A CPU ratio passes
    only when e lost nothing in that scenario: a run that dropped work would leave its cost out.
    """
    cpu, ok = "cpu_us", "ok"

    def mine(key: str, scenario: str = ok) -> Optional[float]:
        return _get(inprocess, "e", scenario, key)

    def lossless(target: Target, scenario: str) -> Target:
        summary = inprocess.get("e", {}).get(scenario)
        if target.value is not None and summary is not None and _losses([summary])[0]:
            target.passed = False
            target.detail = _join(target.detail, "e lost items here: its CPU leaves their export out (cannot pass)")
        return target

    result = [
        lossless(_ratio("e CPU/req ≤ 1.25 × b (ok)", mine(cpu), _get(inprocess, "b", ok, cpu), 1.25, stretch=1.0), ok),
        lossless(_ratio("e CPU/req ≤ 0.2 × d (ok)", mine(cpu), _get(inprocess, "d", ok, cpu), 0.2), ok),
        lossless(
            _ratio(
                "e unsampled CPU/req ≤ 1.3 × b unsampled",
                mine(cpu, "unsampled"),
                _get(inprocess, "b", "unsampled", cpu),
                1.3,
            ),
            "unsampled",
        ),
    ]
    if inprocess.get("e"):
        lost, total, where = _losses(inprocess["e"].values())
        detail = "; ".join(where) or f"{total} items, all delivered"
        name = "in process (saturation loop): e loses nothing in any channel"
        result.append(Target(name, float(lost), 0, lost == 0, detail))
    for worker in ("sync", "gthread"):
        served = by_worker.get(worker, {})
        name = f"gunicorn {worker}: e loses nothing in any channel"
        if not served.get("e"):
            result.append(Target(name, None, 0, None, "not measured (no wrk, or not asked)"))
            continue
        lost, total, where = _losses(served["e"].values())
        detail = "; ".join(where) or f"{total} items, all delivered"
        result.append(Target(name, float(lost), 0, lost == 0, detail))
        served_e = _get(served, "e", ok, "rps")
        result += [
            _ratio(f"gunicorn {worker}: e req/s ≥ 0.7 × b", served_e, _get(served, "b", ok, "rps"), 0.7, False, 0.85),
            _ratio(f"gunicorn {worker}: e req/s ≥ 3 × d", served_e, _get(served, "d", ok, "rps"), 3.0, at_most=False),
        ]
    if inprocess.get("e"):
        name, unsampled = "e unsampled: every error delivered", inprocess.get("e", {}).get("unsampled")
        if unsampled is None or not sentry_leg:
            result.append(Target(name, None, 0, None, "needs the Sentry leg" if unsampled else "not measured"))
        else:
            got, want = unsampled["delivered"]["sentry_errors"]
            result.append(Target(name, float(want - got), 0, got == want, f"{got}/{want}"))
    rss = [
        (scenario, e["rss_mb"] - b["rss_mb"])
        for scenario, e in inprocess.get("e", {}).items()
        if (b := inprocess.get("b", {}).get(scenario)) is not None
    ]
    if rss:
        scenario, worst = max(rss, key=lambda item: item[1])
        result.append(Target("e peak RSS ≤ b's + 10 MB (MB over b, worst scenario)", worst, 10, worst <= 10, scenario))
    if not sentry_leg:
        for target in result:
            target.detail = _join(target.detail, "e is OTLP-only in this run")
    return result


def surface_targets(surfaces: dict[str, Any]) -> list[Target]:
    """Every new signal included: on each surface (``benchmarks.surfaces``), each of the bridge's rows (the
    first of each pair) delivered everything it was given, in every channel the sink counts."""
    result = []
    for surface, measured in surfaces.items():
        rows = measured.get("rows", {})
        for key in dict.fromkeys(pair[0] for pair in measured.get("pairs", [])):
            row = rows.get(key, {})
            delivered = row.get("delivered", {})
            if not delivered:
                continue  # nothing sent anywhere in this configuration (only its CPU is compared)
            lost = sum(max(0, want - got) for got, want in delivered.values())
            total = sum(want for _, want in delivered.values())
            where = [f"{channel} {got}/{want}" for channel, (got, want) in delivered.items() if got != want]
            detail = "; ".join(where) or f"{total} items, all delivered"
            name = f"{surface}: {row.get('label', key)} loses nothing"
            result.append(Target(name, float(lost), 0, lost == 0, detail))
    return result


def _join(*parts: str) -> str:
    return "; ".join(part for part in parts if part)


def _tables(inprocess: dict[str, Any], by_worker: dict[str, dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(prefix, config -> scenario -> summary) for in process and each gunicorn worker."""
    return [("", inprocess)] + [(f"gunicorn {worker}: ", table) for worker, table in by_worker.items()]


def losses_note(inprocess: dict[str, Any], by_worker: dict[str, dict[str, Any]], labels: dict[str, str]) -> list[str]:
    """Which runs lost items: their CPU figure leaves out the work of exporting what was lost."""
    lossy = [
        f"{where}{labels.get(config, config)} {scenario}"
        for where, table in _tables(inprocess, by_worker)
        for config, by_scenario in table.items()
        for scenario, summary in by_scenario.items()
        if _losses([summary])[0]
    ]
    if not lossy:
        return []
    return [
        "Runs that lost items (in bold above) did less work than asked: their CPU leaves out the export of "
        "what was lost. Lost here: " + ", ".join(dict.fromkeys(lossy)) + "."
    ]


def _delivered(summary: dict[str, Any], channel: str) -> str:
    pair = summary["delivered"].get(channel)
    if pair is None:
        return "—"
    got, want = pair
    if got == want:
        return f"{got}/{want}"
    lost = (want - got) / want * 100 if want else 0.0
    return f"**{got}/{want}** ({lost:.0f} % lost)" if got < want else f"**{got}/{want}** (extra)"


def _fmt(value: Optional[float], digits: int = 0) -> str:
    return "—" if value is None else f"{value:,.{digits}f}".replace(",", " ")


def markdown(
    inprocess: dict[str, dict[str, Any]],
    by_worker: dict[str, dict[str, Any]],
    found: list[Target],
    labels: dict[str, str],
    connections: int = 16,
) -> str:
    lines = [
        "### In process (median of the repeats; delivered summed over them)",
        "",
        "| config | scenario | CPU µs/req | wall µs/req | peak RSS MB | OTLP spans | Sentry tx | Sentry errors |",
        "|---|---|---:|---:|---:|---|---|---|",
    ]
    for config, by_scenario in inprocess.items():
        for scenario, s in by_scenario.items():
            lines.append(
                f"| {labels.get(config, config)} | {scenario} | {_fmt(s.get('cpu_us'))} | {_fmt(s.get('wall_us'))} "
                f"| {_fmt(s.get('rss_mb'), 1)} | "
                + " | ".join(_delivered(s, channel) for channel in CHANNELS)
                + " |"
            )
    for worker, served in by_worker.items():
        what = "1 sync worker" if worker == "sync" else f"1 {worker} worker, 4 threads"
        lines += [
            "",
            f"### gunicorn ({what}) driven by wrk -t1 -c{connections}",
            "",
            "| config | scenario | req/s | p50 ms | p99 ms | worker CPU µs/req | non-2xx "
            "| OTLP spans | Sentry tx | Sentry errors |",
            "|---|---|---:|---:|---:|---:|---:|---|---|---|",
        ]
        for config, by_scenario in served.items():
            for scenario, s in by_scenario.items():
                lines.append(
                    f"| {labels.get(config, config)} | {scenario} | {_fmt(s.get('rps'))} | {_fmt(s.get('p50_ms'), 2)} "
                    f"| {_fmt(s.get('p99_ms'), 2)} | {_fmt(s.get('cpu_us'))} | {s.get('non_2xx', 0)} | "
                    + " | ".join(_delivered(s, channel) for channel in CHANNELS)
                    + " |"
                )
    drops = [
        f"{where}{labels.get(s['config'], s['config'])} {s['scenario']}: "
        + ", ".join(f"{key} {n}" for key, n in sorted(s["client_reports"].items()))
        for where, table in _tables(inprocess, by_worker)
        for by_scenario in table.values()
        for s in by_scenario.values()
        if s["client_reports"]
    ]
    if drops:
        lines += ["", "Losses the SDKs reported themselves (client reports, reason:category quantity):", ""]
        lines += [f"- {line}" for line in drops]
    for note in losses_note(inprocess, by_worker, labels):
        lines += ["", note]
    problems = sum(
        s["sink_problems"] for _, table in _tables(inprocess, by_worker) for v in table.values() for s in v.values()
    )
    if problems:
        lines += ["", f"**The sink could not decode {problems} request(s)**: what was sent is broken."]
    lines += ["", "### Targets (ratios from this run)", ""] + [target.line() for target in found]
    return "\n".join(lines)
