import os

import torch

# Filled by the interleaved benchmarks: (group, candidate, Samples, speedup over eager).
INTERLEAVED_RESULTS: list[tuple[str, str, object, float]] = []
# Markdown sections (per-layer tables) printed at the end of the run.
SECTIONS: list[str] = []


def pytest_report_header(config):
    return (
        f"fastresnet benchmarks: torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"rounds={os.environ.get('FASTRESNET_BENCH_ROUNDS', 'default')}"
    )


def pytest_terminal_summary(terminalreporter):
    write = terminalreporter.write_line
    for section in SECTIONS:
        write("")
        for line in section.splitlines():
            write(line)
    if not INTERLEAVED_RESULTS:
        return
    write("")
    write("Interleaved (each round runs every candidate once; ms; speedup = eager median / median):")
    write(f"{'group':40s} {'candidate':24s} {'p20':>9s} {'p50':>9s} {'p80':>9s} {'speedup':>8s}")
    for group, candidate, samples, speedup in INTERLEAVED_RESULTS:
        write(
            f"{group:40s} {candidate:24s} {samples.p20 * 1e3:9.2f} {samples.p50 * 1e3:9.2f} "
            f"{samples.p80 * 1e3:9.2f} {speedup:7.2f}x"
        )
