"""PNG charts for the docs, drawn from the benchmarks' JSON results: ``python -m benchmarks.charts``.

Each benchmark writes its latest figures to ``benchmarks/results/`` (``run.json`` from
``benchmarks.run``, ``faults.json`` from ``benchmarks.faults``, ``serve.json`` from
``benchmarks.serve_throughput``); this module turns whichever of them exist into the charts that
``docs/performance.md`` embeds (``docs/img/*.png``). ``benchmarks.run`` calls it after a full run, so the
charts are regenerated with the figures. matplotlib is in the ``benchmarks`` extra and imported here
only.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional

__all__ = ["RESULTS", "IMAGES", "render_all", "main"]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
IMAGES = ROOT / "docs" / "img"
_COLOURS = {"a": "#9e9e9e", "b": "#4c72b0", "c": "#c44e52", "d": "#8172b2", "e": "#55a868"}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _label(document: dict[str, Any], config: str) -> str:
    return str(document.get("labels", {}).get(config, config))


def cpu_chart(document: dict[str, Any], out: Path) -> Optional[Path]:
    """In-process CPU µs per request, every export included, per stack and scenario (grouped bars)."""
    inprocess: dict[str, dict[str, Any]] = document.get("inprocess") or {}
    if not inprocess:
        return None
    plt = _pyplot()
    configs = list(inprocess)
    scenarios = [s for s in ("ok", "errors", "unsampled") if any(s in inprocess[c] for c in configs)]
    fig, ax = plt.subplots(figsize=(8, 4.2))
    width = 0.8 / max(len(configs), 1)
    for index, config in enumerate(configs):
        values = [inprocess[config].get(s, {}).get("cpu_us", 0.0) for s in scenarios]
        xs = [i + index * width for i in range(len(scenarios))]
        bars = ax.bar(xs, values, width, label=_label(document, config), color=_COLOURS.get(config))
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks([i + width * (len(configs) - 1) / 2 for i in range(len(scenarios))], scenarios)
    ax.set_ylabel("CPU µs per request (all threads, exports included)")
    ax.set_title("In process: CPU per request, by stack")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _workers(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """gunicorn's figures per worker class (older results hold the sync worker's only)."""
    workers: dict[str, dict[str, Any]] = document.get("gunicorn_workers") or {}
    if not workers and document.get("gunicorn"):
        workers = {"sync": document["gunicorn"]}
    return workers


def gunicorn_chart(document: dict[str, Any], out: Path) -> Optional[Path]:
    """Requests/s and p99 under gunicorn + wrk, per stack: one row of two panels per worker class."""
    workers = {w: [(c, s["ok"]) for c, s in served.items() if "ok" in s] for w, served in _workers(document).items()}
    workers = {w: rows for w, rows in workers.items() if rows}
    if not workers:
        return None
    plt = _pyplot()
    connections = (document.get("settings") or {}).get("wrk_connections", 16)
    fig, axes = plt.subplots(len(workers), 2, figsize=(9, 3.2 * len(workers)), squeeze=False)
    for (worker, rows), (left, right) in zip(workers.items(), axes):
        names = [_label(document, c) for c, _ in rows]
        colours = [_COLOURS.get(c) for c, _ in rows]
        bars = left.barh(names, [r.get("rps", 0.0) for _, r in rows], color=colours)
        left.bar_label(bars, fmt="%.0f", fontsize=7)
        left.set_xlabel("requests/s (higher is better)")
        left.set_title(f"{worker} worker", fontsize=9, loc="left")
        left.invert_yaxis()
        bars = right.barh(names, [r.get("p99_ms", 0.0) for _, r in rows], color=colours)
        right.bar_label(bars, fmt="%.2f", fontsize=7)
        right.set_xlabel("p99 ms (lower is better)")
        right.invert_yaxis()
        right.set_yticklabels([])
    fig.suptitle(f"gunicorn (one worker) at saturation: wrk, {connections} connections")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


_CHANNEL_NAMES = {"otlp_spans": "OTLP spans", "sentry_transactions": "Sentry transactions", "sentry_errors": "errors"}


def losses_chart(document: dict[str, Any], out: Path) -> Optional[Path]:
    """Share of the items each stack lost (counted by the sink), per channel: in process (ok) and under gunicorn."""
    places = [("in process", document.get("inprocess") or {})]
    places += [(f"gunicorn {w}", served) for w, served in _workers(document).items()]
    rows: list[tuple[str, str, float]] = []  # (place, config, % lost of every channel together)
    for place, table in places:
        for config, by_scenario in table.items():
            summary = by_scenario.get("ok")
            if not summary or not summary.get("delivered"):
                continue
            got = sum(pair[0] for pair in summary["delivered"].values())
            want = sum(pair[1] for pair in summary["delivered"].values())
            rows.append((place, config, 100.0 * max(0, want - got) / want if want else 0.0))
    if not rows:
        return None
    plt = _pyplot()
    place_names = list(dict.fromkeys(place for place, _, _ in rows))
    configs = list(dict.fromkeys(config for _, config, _ in rows))
    fig, ax = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / max(len(configs), 1)
    for index, config in enumerate(configs):
        values = [next((v for p, c, v in rows if p == place and c == config), 0.0) for place in place_names]
        xs = [i + index * width for i in range(len(place_names))]
        bars = ax.bar(xs, values, width, label=_label(document, config), color=_COLOURS.get(config))
        ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.set_xticks([i + width * (len(configs) - 1) / 2 for i in range(len(place_names))], place_names)
    ax.set_ylabel("% of items lost (spans, transactions, errors)")
    ax.set_title("At saturation: what each stack lost (scenario ok; counted by the sink)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def faults_chart(document: dict[str, Any], out: Path) -> Optional[Path]:
    """p99 with one backend faulty, as a ratio of the healthy run paired with it."""
    summary: dict[str, dict[str, Any]] = document.get("summary") or {}
    rows = [(label, figures["p99_ratio"]) for label, figures in summary.items() if label != "both healthy"]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 0.32 * len(rows) + 1.2))
    colours = ["#55a868" if ratio <= 1.1 else "#c44e52" for _, ratio in rows]
    bars = ax.barh([label for label, _ in rows], [ratio for _, ratio in rows], color=colours)
    ax.bar_label(bars, fmt="%.2f", fontsize=7)
    ax.axvline(1.1, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("p99 / paired healthy p99 (target ≤ 1.1, dashed)")
    ax.set_title("A faulty backend does not slow requests")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def serve_chart(document: dict[str, Any], out: Path) -> Optional[Path]:
    """`serve`'s spans per second on one core: decoding alone, and decoding with conversion."""
    keys = (("decode", "decode_spans_s"), ("decode+convert", "convert_spans_s"))
    rates = [(name, document.get(key)) for name, key in keys]
    rows = [(name, value) for name, value in rates if value]
    if not rows:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 2.4))
    bars = ax.barh([n for n, _ in rows], [v for _, v in rows], color=["#4c72b0", "#55a868"][: len(rows)])
    ax.bar_label(bars, fmt="%.0f", fontsize=7)
    ax.margins(x=0.18)  # room for the value labels
    ax.set_xlabel("spans per second, one core")
    ax.set_title("otel-sentry-bridge serve: throughput")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def surfaces_chart(document: dict[str, Any], out: Path) -> Optional[Path]:
    """The new surfaces (metrics, logging, ASGI, Celery): each stack's CPU per unit of work and its peak RSS,
    one panel per surface, the bridge's stacks in green."""
    found: dict[str, dict[str, Any]] = document.get("surfaces") or {}
    if not found:
        return None
    plt = _pyplot()
    panels = list(found.values())
    columns = 2 if len(panels) > 1 else 1
    rows_n = (len(panels) + columns - 1) // columns
    fig, axes = plt.subplots(rows_n, columns, figsize=(6.2 * columns, 2.9 * rows_n), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, result in zip(axes.flat, panels):
        rows = result["rows"]
        mine = {pair[0] for pair in result.get("pairs", ())}
        peers = {pair[1] for pair in result.get("pairs", ())}
        keys = list(rows)
        colours = [_COLOURS["e"] if k in mine else _COLOURS["b"] if k in peers else _COLOURS["a"] for k in keys]
        bars = ax.barh([rows[k]["label"] for k in keys], [rows[k]["cost"] for k in keys], color=colours)
        ax.bar_label(bars, labels=[f"{rows[k]['cost']:.0f} µs · {rows[k]['rss_mb']:.0f} MB" for k in keys], fontsize=7)
        ax.margins(x=0.35)  # room for the value labels
        ax.tick_params(axis="y", labelsize=7)
        ax.set_xlabel(result["unit"], fontsize=7)
        ax.set_title(result["title"], fontsize=9)
        ax.invert_yaxis()
    fig.suptitle("New surfaces against their peers (CPU · peak RSS; the bridge in green)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


_CHARTS = (
    ("run.json", cpu_chart, "cpu-per-request.png"),
    ("run.json", gunicorn_chart, "gunicorn.png"),
    ("run.json", losses_chart, "losses.png"),
    ("run.json", surfaces_chart, "surfaces.png"),
    ("faults.json", faults_chart, "faults-p99.png"),
    ("serve.json", serve_chart, "serve-throughput.png"),
)


def render_all(results: Path = RESULTS, images: Path = IMAGES) -> list[Path]:
    """Every chart whose results exist; returns the files written."""
    images.mkdir(parents=True, exist_ok=True)
    written = []
    for source, draw, name in _CHARTS:
        path = results / source
        if path.is_file():
            done = draw(json.loads(path.read_text()), images / name)
            if done is not None:
                written.append(done)
    return written


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON results are")
    parser.add_argument("--out", type=Path, default=IMAGES, help="where the PNG charts go")
    args = parser.parse_args(argv)
    for path in render_all(args.results, args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
