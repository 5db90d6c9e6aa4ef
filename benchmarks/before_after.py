"""fastresnet `auto` before and after a change, in alternating processes.

    git worktree add /tmp/before <rev>   # and build its extension in place there
    .venv/bin/python benchmarks/before_after.py /tmp/before . [--rounds 6]

Each round runs one process per tree (PYTHONPATH=tree), in a random order; each process
optimizes ResNet-18 and ResNet-50 in float32 and bfloat16 and times batch 1 and 8 at 224x224
(the median of 5 calls after 2). The medians over rounds are printed, with after / before.
Two trees in one process would share one registered extension, hence the processes.
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time


def child() -> None:
    import torch

    import fastresnet
    from fastresnet.bench.models import build_model

    torch.set_num_threads(2)
    times = {}
    for dtype in (torch.float32, torch.bfloat16):
        for name in ("resnet18", "resnet50"):
            model = build_model(name)
            fast = fastresnet.optimize(model, dtype=dtype)
            backend = fastresnet.explain(fast).info.backend
            for batch in (1, 8):
                x = torch.randn(batch, 3, 224, 224).to(dtype)
                with torch.inference_mode():
                    fast(x), fast(x)
                    calls = []
                    for _ in range(5):
                        start = time.perf_counter()
                        fast(x)
                        calls.append(time.perf_counter() - start)
                times[f"{name} b{batch} {str(dtype).removeprefix('torch.')} ({backend})"] = sorted(calls)[2] * 1e3
    print(json.dumps(times))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    trees = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    runs = {label: [] for label in trees}
    for _ in range(args.rounds):
        for label, tree in random.sample(list(trees.items()), len(trees)):
            env = dict(os.environ, PYTHONPATH=tree)
            done = subprocess.run([sys.executable, __file__, "--child"], env=env, capture_output=True, text=True,
                                  cwd="/", check=True)  # fmt: skip
            runs[label].append(json.loads(done.stdout.strip().splitlines()[-1]))
    for key in runs["after"][0]:
        before, after = (statistics.median(r[key] for r in runs[label]) for label in ("before", "after"))
        print(f"{key:34s} before {before:8.2f}  after {after:8.2f}  after/before {after / before:.3f}")


if __name__ == "__main__":
    child() if sys.argv[1:] == ["--child"] else main()
