"""Turn measurements into long-format rows, a Markdown report, a JSON file and plots.

One row per (model, candidate, dtype, device, batch, image size, metric) with p20/p50/p80,
the machine, the versions and a timestamp, so results from many runs can be concatenated
and compared. Ratios are medians over medians measured in the same interleaved run.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .. import __version__
from .peers import is_fastresnet
from .suite import BenchResult, Measurement


@dataclass
class Context:
    dtype: torch.dtype
    device: torch.device
    image_size: int
    machine: str
    peak_flops: float | None
    peak_source: str  # a label naming the figure, e.g. "FMA peak (avx512, measured)"
    cpu_isa: str = "none"  # the --cpu-isa cap, or "none"
    cpu_isa_env: dict[str, str] = field(default_factory=dict)  # the cap variables as set
    left_out: dict[str, str] = field(default_factory=dict)  # candidate -> why it was left out
    cpu_flags: str | None = None  # the CPU's relevant /proc/cpuinfo flags (CPU runs)
    peer_notes: list[str] = field(default_factory=list)  # e.g. the precision a peer would choose by itself

    def versions(self) -> dict:
        return {
            "fastresnet": __version__,
            "torch": torch.__version__,
            "triton": _triton_version(),
            **{peer: _installed_version(peer) for peer in ("onnxruntime", "openvino")},
            "python": platform.python_version(),
        }


def _triton_version() -> str | None:
    """Triton's version, or None where it cannot be imported (it is installed on Linux only,
    and fastresnet runs without it)."""
    try:
        import triton
    except ImportError:
        return None
    return getattr(triton, "__version__", None)


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _speedups(measurements: list[Measurement]) -> dict[tuple, tuple[float | None, float | None]]:
    """(model, batch, candidate) -> (speedup over eager, over the best non-fastresnet peer)."""
    result = {}
    groups = {}
    for m in measurements:
        if m.status == "ok":
            groups.setdefault((m.model, m.batch), []).append(m)
    for (model, batch), group in groups.items():
        medians = {m.candidate: m.samples.p50 for m in group}
        eager = medians.get("eager")
        peers = [t for c, t in medians.items() if not is_fastresnet(c)]
        best_peer = min(peers) if peers else None
        for candidate, median in medians.items():
            result[(model, batch, candidate)] = (
                eager / median if eager else None,
                best_peer / median if best_peer else None,
            )
    return result


def rows(result: BenchResult, context: Context) -> list[dict]:
    """The long-format rows of a run."""
    timestamp = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    speedups = _speedups(result.measurements)
    base = {
        "dtype": str(context.dtype).removeprefix("torch."),
        "device": context.device.type,
        "image_size": context.image_size,
        "machine": context.machine,
        "cpu_isa": context.cpu_isa,
        "versions": context.versions(),
        "timestamp": timestamp,
    }
    out = []
    for m in result.measurements:
        common = dict(base, model=m.model, backend=m.candidate, batch=m.batch)
        if m.status != "ok":
            out.append(dict(common, metric="status", p20=None, p50=None, p80=None, status=m.status, note=m.error))
            continue
        seconds = {"p20": m.samples.p20, "p50": m.samples.p50, "p80": m.samples.p80}
        flops = result.flops_per_image[m.model] * m.batch

        def metric(name, per_quantile, inverse=False, note=None):
            # Throughput-like metrics invert latency: their p20 comes from the latency p80.
            flip = {"p20": "p80", "p50": "p50", "p80": "p20"} if inverse else None
            values = {q: per_quantile(seconds[flip[q] if flip else q]) for q in ("p20", "p50", "p80")}
            out.append(dict(common, metric=name, status="ok", note=note, **values))

        metric("latency_ms", lambda s: s * 1e3)
        metric("ms_per_image", lambda s: s * 1e3 / m.batch)
        metric("images_per_s", lambda s: m.batch / s, inverse=True)
        metric("gflops_per_s", lambda s: flops / s / 1e9, inverse=True)
        if context.peak_flops:
            # The note names the peak, and so the CPU tier, that the percentage is of.
            peak = f"of {context.peak_source}: {context.peak_flops / 1e9:.1f} GFLOP/s"
            metric("percent_of_peak", lambda s: 100 * flops / s / context.peak_flops, inverse=True, note=peak)
        vs_eager, vs_peer = speedups[(m.model, m.batch, m.candidate)]
        for name, value in (("speedup_vs_eager", vs_eager), ("speedup_vs_best_peer", vs_peer)):
            if value is not None:
                out.append(dict(common, metric=name, p20=None, p50=value, p80=None, status="ok", note=None))
        if m.peak_memory_mib is not None:
            out.append(dict(common, metric="peak_memory_mib", p20=None, p50=m.peak_memory_mib, p80=None, status="ok", note=None))
        if m.error_of_scale is not None:
            note = "max |out - fp64 eager| / output scale, on the timed input"
            out.append(dict(common, metric="error_vs_fp64", p20=None, p50=m.error_of_scale, p80=None, status="ok", note=note))
        if m.setup_s is not None:
            note = "build and first call (torch.compile's compile, Triton's autotuning)"
            out.append(dict(common, metric="setup_s", p20=None, p50=m.setup_s, p80=None, status="ok", note=note))
    return out


def _fmt(value, digits=2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _error(value) -> str:
    return "-" if value is None else f"{value:.1e}"


def _cap_line(context: Context) -> str:
    line = f"- CPU ISA cap: {context.cpu_isa}"
    if context.cpu_isa_env:
        line += f" ({', '.join(f'{k}={v}' for k, v in context.cpu_isa_env.items())})"
    if context.left_out:
        line += f"; left out, as they cannot be capped to {context.cpu_isa}: {', '.join(context.left_out)}"
    return line


def markdown(table_rows: list[dict], context: Context, extra_sections: list[str] = ()) -> str:
    by_key = {}
    for r in table_rows:
        by_key.setdefault((r["model"], r["batch"]), {}).setdefault(r["backend"], {})[r["metric"]] = r
    lines = [
        "# fastresnet benchmark",
        "",
        f"- machine: {context.machine}; device {context.device.type}; dtype "
        f"{str(context.dtype).removeprefix('torch.')}; image {context.image_size}x{context.image_size}",
        *([f"- CPU flags: {context.cpu_flags}"] if context.cpu_flags else []),
        f"- {context.peak_source}" + (f": {context.peak_flops / 1e9:.1f} GFLOP/s" if context.peak_flops else ""),
        _cap_line(context),
        *(f"- {note}" for note in context.peer_notes),
        f"- versions: {', '.join(f'{k} {v}' for k, v in context.versions().items())}",
        "- candidates ran interleaved, in a random order each round; times are medians with p20-p80;"
        " speedups are ratios of medians from the same run",
        "",
    ]
    for (model, batch), candidates in by_key.items():
        lines += [
            f"## {model}, batch {batch}",
            "",
            "| backend | ms (p20-p80) | ms/image | images/s | vs eager | vs best peer | GFLOP/s | % of peak | error / scale "
            "| peak MiB | setup s |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        notes = []
        for backend, metrics in candidates.items():
            if "status" in metrics:
                row = metrics["status"]
                lines.append(f"| {backend} | {row['status']} | | | | | | | | | |")
                notes.append(f"- {backend}: {row['status']}: {row['note']}")
                continue
            lat = metrics["latency_ms"]
            get = lambda name: metrics.get(name, {}).get("p50")  # noqa: E731
            lines.append(
                f"| {backend} | {_fmt(lat['p50'])} ({_fmt(lat['p20'])}-{_fmt(lat['p80'])}) | {_fmt(get('ms_per_image'))} "
                f"| {_fmt(get('images_per_s'), 1)} | {_fmt(get('speedup_vs_eager'))}x | {_fmt(get('speedup_vs_best_peer'))}x "
                f"| {_fmt(get('gflops_per_s'), 1)} | {_fmt(get('percent_of_peak'), 1)} | {_error(get('error_vs_fp64'))} "
                f"| {_fmt(get('peak_memory_mib'), 0)} "
                f"| {_fmt(get('setup_s'), 1)} |"
            )
        lines += ["", *notes, ""] if notes else [""]
    lines += list(extra_sections)
    return "\n".join(lines) + "\n"


def speedup_plot(table_rows: list[dict], path: Path) -> str | None:
    """A bar chart of the speedup over eager per model and batch; returns why not, if not."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'fastresnet[report]'): no plot written"
    speed = [r for r in table_rows if r["metric"] == "speedup_vs_eager"]
    groups = list(dict.fromkeys(f"{r['model']}\nbatch {r['batch']}" for r in speed))
    backends = list(dict.fromkeys(r["backend"] for r in speed))
    figure, axes = plt.subplots(figsize=(max(6, 1.8 * len(groups) + 2) + 2.5, 4))  # + the legend
    width = 0.8 / max(len(backends), 1)
    for i, backend in enumerate(backends):
        values = {f"{r['model']}\nbatch {r['batch']}": r["p50"] for r in speed if r["backend"] == backend}
        xs = [g + i * width for g in range(len(groups))]
        axes.bar(xs, [values.get(g, 0) for g in groups], width, label=backend)
    axes.axhline(1.0, color="black", linewidth=0.8)
    axes.set_xticks([g + width * (len(backends) - 1) / 2 for g in range(len(groups))], groups)
    axes.set_ylabel("speedup over eager (median)")
    # Beside the axes, not over the bars.
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return None


def write(out_dir: Path, table_rows: list[dict], context: Context, extra_sections: list[str] = ()) -> list[str]:
    """Write report.md, results.json and speedup.png into ``out_dir``; return notes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(table_rows, indent=1))
    notes = []
    problem = speedup_plot(table_rows, out_dir / "speedup.png")
    sections = list(extra_sections)
    if problem:
        notes.append(problem)
    else:
        sections.append("![speedup over eager](speedup.png)\n")
    (out_dir / "report.md").write_text(markdown(table_rows, context, sections))
    return notes
