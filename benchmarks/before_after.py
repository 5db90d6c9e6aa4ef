"""fastresnet `auto` before and after a change, in alternating processes.

    git worktree add /tmp/before <rev>   # and build its extension in place there
    .venv/bin/python benchmarks/before_after.py /tmp/before . [--rounds 6] \
        [--dtypes float32,bfloat16,int8] [--batches 1,8] [--backend cpp-cpu]

Each round runs one process per tree (PYTHONPATH=tree), in a random order; each process
optimizes ResNet-18 and ResNet-50 in each dtype (int8: fastresnet.quantize on 2 random
batches) on the backend given (default auto) and times each batch size at 224x224 (the
median of 5 calls after 2). The medians over rounds are printed, with after / before.
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


def child(dtypes: str, batches: str, backend: str) -> None:
    import torch

    import fastresnet
    from fastresnet.bench.models import build_model

    torch.set_num_threads(2)
    times = {}
    for dtype in dtypes.split(","):
        for name in ("resnet18", "resnet50"):
            model = build_model(name)
            if dtype == "int8":
                calibration = [torch.randn(1, 3, 224, 224) for _ in range(2)]
                fast = fastresnet.quantize(model, calibration, backend=backend)
            else:
                fast = fastresnet.optimize(model, dtype=getattr(torch, dtype), backend=backend)
            chosen = fastresnet.explain(fast).info.backend
            for batch in map(int, batches.split(",")):
                x = torch.randn(batch, 3, 224, 224)
                if dtype == "bfloat16":
                    x = x.bfloat16()
                with torch.inference_mode():
                    fast(x), fast(x)
                    calls = []
                    for _ in range(5):
                        start = time.perf_counter()
                        fast(x)
                        calls.append(time.perf_counter() - start)
                times[f"{name} b{batch} {dtype} ({chosen})"] = sorted(calls)[2] * 1e3
    print(json.dumps(times))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--dtypes", default="float32,bfloat16", help="of float32, bfloat16, int8")
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--backend", default="auto")
    args = parser.parse_args()
    child_args = ["--child", args.dtypes, args.batches, args.backend]
    trees = {"before": os.path.abspath(args.before), "after": os.path.abspath(args.after)}
    runs = {label: [] for label in trees}
    for _ in range(args.rounds):
        for label, tree in random.sample(list(trees.items()), len(trees)):
            env = dict(os.environ, PYTHONPATH=tree)
            done = subprocess.run([sys.executable, __file__, *child_args], env=env, capture_output=True, text=True,
                                  cwd="/", check=True)  # fmt: skip
            runs[label].append(json.loads(done.stdout.strip().splitlines()[-1]))
    for key in runs["after"][0]:
        before, after = (statistics.median(r[key] for r in runs[label]) for label in ("before", "after"))
        print(f"{key:34s} before {before:8.2f}  after {after:8.2f}  after/before {after / before:.3f}")


if __name__ == "__main__":
    child(*sys.argv[2:]) if sys.argv[1:2] == ["--child"] else main()
