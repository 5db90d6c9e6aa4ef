"""The report of benchmarks/gpu_check.sh: what passed or failed, how long each step took.

    python3 benchmarks/gpu_check_summary.py WORKDIR OUTDIR

Reads what the script's steps left in WORKDIR (steps/*.tsv, env.json, junit/*.xml,
parity/*/verify.json, bench/*/results.json and report.md) and writes into OUTDIR the few files
that come back from a GPU machine:

    summary.md     steps (status, seconds, budget), test counts, parity, a bench table
    summary.json   the same, for programs
    report.md      the bench runs' reports, one after another
    results.json   their long-format rows, concatenated
    parity.md      the verify tables, one per run
    logs.tar.gz    everything in WORKDIR (each file capped at its last MAX_FILE_BYTES)

Standard library only: it must still report when torch or the build is broken. The script
runs it after every step, so a run cut short still leaves an up-to-date summary.
"""

from __future__ import annotations

import io
import json
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

MAX_FILE_BYTES = 2 * 2**20  # per file in the tarball: the tail of a longer log
STEP_FIELDS = ("seq", "name", "status", "rc", "seconds", "budget", "log", "note")


def read_meta(work: Path) -> dict:
    meta = {}
    path = work / "meta.env"
    if path.exists():
        for line in path.read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep:
                meta[key.strip()] = value.strip()
    return meta


def read_steps(work: Path) -> list[dict]:
    steps = []
    for path in sorted((work / "steps").glob("*.tsv")):
        for line in path.read_text().splitlines():
            values = line.split("\t")
            if len(values) >= len(STEP_FIELDS) - 1:
                steps.append(dict(zip(STEP_FIELDS, values + [""] * (len(STEP_FIELDS) - len(values)))))
    return sorted(steps, key=lambda s: int(s["seq"]) if s["seq"].isdigit() else 0)


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def read_junit(path: Path) -> dict:
    """Counts and the failing and skipped tests of one junit XML file."""
    result = {"file": path.name, "tests": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "failures": [], "skips": {}}
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as error:
        result["unreadable"] = str(error)
        return result
    for case in root.iter("testcase"):
        name = f"{case.get('classname', '')}::{case.get('name', '')}"
        result["tests"] += 1
        if case.find("failure") is not None:
            result["failed"] += 1
            message = case.find("failure").get("message", "")
            result["failures"].append(f"{name}: {message[:300]}")
        elif case.find("error") is not None:
            result["errors"] += 1
            result["failures"].append(f"{name}: error: {case.find('error').get('message', '')[:300]}")
        elif case.find("skipped") is not None:
            result["skipped"] += 1
            reason = case.find("skipped").get("message", "")[:200]
            result["skips"][reason] = result["skips"].get(reason, 0) + 1
        else:
            result["passed"] += 1
    return result


def read_parity(work: Path) -> list[dict]:
    rows = []
    for path in sorted((work / "parity").glob("*/verify.json")):
        for row in read_json(path) or []:
            rows.append(dict(row, run=path.parent.name))
    return rows


def read_bench(work: Path) -> list[tuple[str, list[dict], str]]:
    """(run name, rows, report text) per bench run, in the order the runs were made."""
    runs = []
    for path in sorted((work / "bench").glob("*/results.json"), key=lambda p: p.stat().st_mtime):
        report = path.parent / "report.md"
        runs.append((path.parent.name, read_json(path) or [], report.read_text() if report.exists() else ""))
    return runs


def _ms(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def bench_table(runs: list[tuple[str, list[dict], str]], metric: str = "latency_ms") -> list[str]:
    """One line per run (dtype, batch): each candidate's median ``metric`` (latency in ms, or
    setup seconds), and with latencies, fastresnet's speedup over the best peer of that run."""
    seen = list(dict.fromkeys(r["backend"] for _, rows, _ in runs for r in rows))
    if not seen:
        return []
    # eager, eager-channels-last, the other peers, then fastresnet's candidates
    first = {"eager": 0, "eager-channels-last": 1}
    candidates = sorted(seen, key=lambda c: (c.startswith("fastresnet"), first.get(c, 2), seen.index(c)))
    lines = [
        "| run | " + " | ".join(candidates) + " |",
        "|---|" + "---|" * len(candidates),
    ]
    for name, rows, _ in runs:
        cells = []
        for candidate in candidates:
            mine = {r["metric"]: r for r in rows if r["backend"] == candidate}
            if metric in mine:
                cell = _ms(mine[metric]["p50"])
                if metric == "latency_ms" and candidate.startswith("fastresnet") and "speedup_vs_best_peer" in mine:
                    cell += f" ({mine['speedup_vs_best_peer']['p50']:.2f}x)"
                cells.append(cell)
            elif "status" in mine:
                cells.append(mine["status"]["status"])
            else:
                cells.append("")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def bench_problems(runs) -> list[str]:
    return [
        f"- {name}: {r['backend']}: {r['status']}: {(r.get('note') or '')[:400]}"
        for name, rows, _ in runs
        for r in rows
        if r["metric"] == "status"
    ]


def summarize(work: Path) -> dict:
    steps = read_steps(work)
    return {
        "meta": read_meta(work),
        "env": read_json(work / "env.json"),
        "steps": steps,
        "tests": [read_junit(p) for p in sorted((work / "junit").glob("*.xml"))],
        "parity": read_parity(work),
        "bench_runs": [name for name, _, _ in read_bench(work)],
        # ok: nothing failed; complete: and no step was left out for lack of time
        "ok": bool(steps) and all(s["status"] in ("passed", "skipped", "out-of-time") for s in steps),
        "complete": bool(steps) and all(s["status"] in ("passed", "skipped") for s in steps),
    }


def markdown(summary: dict, runs) -> str:
    meta, env = summary["meta"], summary["env"] or {}
    lines = ["# fastresnet GPU check", ""]
    mode = meta.get("mode", "?")
    lines.append(f"- mode: {mode}; device {meta.get('device', '?')}; started {meta.get('started', '?')}")
    if env:
        lines.append(
            f"- machine: {env.get('gpu') or 'no GPU'}; capability {env.get('capability')}; driver {env.get('driver')}; "
            f"{env.get('cpus')} CPUs"
        )
        lines.append(
            f"- versions: python {env.get('python')}, torch {env.get('torch')} (CUDA {env.get('torch_cuda')}), "
            f"triton {env.get('triton')}, torchvision {env.get('torchvision')}, nvcc {env.get('nvcc')}"
        )
    total = sum(float(s["seconds"] or 0) for s in summary["steps"] if s["status"] != "skipped")
    lines.append(
        f"- time: steps took {total:.0f} s (the checks and parity run side by side) of a {meta.get('total_budget_s', '?')} s"
        f" budget; elapsed {meta.get('elapsed_s', '?')} s"
    )
    counts = {}
    for s in summary["steps"]:
        counts[s["status"]] = counts.get(s["status"], 0) + 1
    result = ", ".join(f"{n} {status}" for status, n in counts.items())
    verdict = "OK" if summary["complete"] else "INCOMPLETE (out of time)" if summary["ok"] else "NOT OK"
    lines += [f"- result: {verdict}: {result or 'no steps ran'}", ""]
    lines += ["## Steps", "", "| step | status | seconds | budget | note |", "|---|---|---|---|---|"]
    for s in summary["steps"]:
        lines.append(f"| {s['name']} | {s['status']} | {s['seconds']} | {s['budget']} | {s['note']} |")
    lines.append("")
    if summary["tests"]:
        lines += ["## Tests", "", "| junit | tests | passed | failed | errors | skipped |", "|---|---|---|---|---|---|"]
        for t in summary["tests"]:
            lines.append(f"| {t['file']} | {t['tests']} | {t['passed']} | {t['failed']} | {t['errors']} | {t['skipped']} |")
        lines.append("")
        for t in summary["tests"]:
            for failure in t["failures"][:30]:
                lines.append(f"- FAILED {failure}")
            for reason, count in t["skips"].items():
                lines.append(f"- skipped ({t['file']}, {count}): {reason}")
        lines.append("")
    if summary["parity"]:
        lines += [
            "## Parity (fastresnet verify; error against fp64 eager)",
            "",
            "| run | model | backend | dtype | data | / output scale | bound / scale | top-1 | result |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in summary["parity"]:
            scale = r["max_abs_error"] / r["relative_error"] if r.get("relative_error") else None
            bound = f"{r['bound'] / scale:.3g}" if scale else "-"
            lines.append(
                f"| {r['run']} | {r['model']} | {r['backend']} | {r['dtype']} | {r['data']} | {r['relative_error']:.3g} "
                f"| {bound} | {r['top1_agreement']:.3f} | {'pass' if r['passed'] else 'FAIL'} |"
            )
        lines.append("")
    table = bench_table(runs)
    if table:
        lines += [
            "## Bench (median ms; fastresnet's speedup over the best peer of the same run in brackets)",
            "",
            *table,
            "",
            *bench_problems(runs),
            "",
            "Setup seconds (build and first call: torch.compile's compile, Triton's autotuning):",
            "",
            *bench_table(runs, "setup_s"),
            "",
        ]
    return "\n".join(lines) + "\n"


def _tail(path: Path) -> bytes:
    size = path.stat().st_size
    with path.open("rb") as f:
        if size > MAX_FILE_BYTES:
            f.seek(size - MAX_FILE_BYTES)
            return b"[... cut: the last %d of %d bytes follow ...]\n" % (MAX_FILE_BYTES, size) + f.read()
        return f.read()


def write_tarball(work: Path, path: Path) -> None:
    partial = path.with_name(path.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        for file in sorted(p for p in work.rglob("*") if p.is_file() and not p.is_symlink()):
            data = _tail(file)
            info = tarfile.TarInfo(str(file.relative_to(work)))
            info.size, info.mtime = len(data), int(file.stat().st_mtime)
            tar.addfile(info, io.BytesIO(data))
    partial.replace(path)


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    work, out = Path(argv[0]), Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(work)
    runs = read_bench(work)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    (out / "summary.md").write_text(markdown(summary, runs))
    if runs:
        (out / "results.json").write_text(json.dumps([r for _, rows, _ in runs for r in rows], indent=1))
        reports = [
            f"<!-- run {name} -->\n" + text.replace("![speedup over eager](speedup.png)", f"(plot: bench/{name}/speedup.png in logs.tar.gz)")
            for name, _, text in runs
        ]
        (out / "report.md").write_text("\n".join(reports))
    parity_reports = sorted((work / "parity").glob("*/verify.md"))
    if parity_reports:
        (out / "parity.md").write_text("\n".join(f"<!-- run {p.parent.name} -->\n{p.read_text()}" for p in parity_reports))
    write_tarball(work, out / "logs.tar.gz")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
