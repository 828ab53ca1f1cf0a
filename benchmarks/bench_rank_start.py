"""What starting the ranks of `reconstruct --gpus N` costs, rank by rank (`fast3r.parallel.PredictRanks`).

    python benchmarks/bench_rank_start.py --views 64 1000 --gpus 2 --work /tmp/rank_start --json out.json
    python benchmarks/bench_rank_start.py --views 4 --model tiny --device cpu   # a quick check (gloo)

For each view count, in a fresh process as a user's command would be: the ranks start while `--decode-s`
seconds of photo decoding are simulated (0: none, the worst case), then one pass over random 512x384
uint8 views. Prints each rank's timeline (seconds since the ranks were started: spawned, process
started = Python and torch imported, weights loaded, group joined = NCCL connected, views received,
done) and the pass's own time. ViT-L/512 random weights in the published layout, made once in --work.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from bench_end_to_end import make_weights

CHILD = """
import json, sys, time
began = time.time()
import torch
from fast3r.model import RunOptions
from fast3r.parallel import PredictRanks
weights, views, gpus, device, decode_s = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], float(sys.argv[5])
imported = time.time()
ranks = PredictRanks(weights, gpus, "bf16" if device == "cuda" else "fp32", device)
generator = torch.Generator().manual_seed(0)
size = (384, 512) if device == "cuda" else (48, 64)
images = [torch.randint(0, 256, (*size, 3), dtype=torch.uint8, generator=generator) for _ in range(views)]
time.sleep(max(0.0, decode_s - (time.time() - ranks.started)))
with ranks:
    waited = time.time()
    ranks.wait_ready()
    ready = time.time()
    out = ranks.predict(images, options=RunOptions(output_device=device if device == "cpu" else "cuda:0"))
    if device == "cuda":
        torch.cuda.synchronize()
    done = time.time()
print(json.dumps({"import_s": imported - began, "views_made_s": waited - ranks.started,
                  "waited_for_ranks_s": ready - waited, "pass_s": done - ready,
                  "timeline": ranks.timeline}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", type=int, nargs="+", default=[64, 1000])
    parser.add_argument("--gpus", type=int, default=2)
    parser.add_argument("--decode-s", type=float, default=0.0, help="simulated decoding while the ranks start")
    parser.add_argument("--model", choices=["vitl512", "tiny"], default="vitl512")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--work", type=Path, default=Path("/tmp/fast3r_rank_start"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    weights = make_weights(args.work / f"weights_{args.model}", args.model)
    runs = []
    for views in args.views:
        began = time.perf_counter()
        command = [sys.executable, "-c", CHILD, str(weights), str(views), str(args.gpus), args.device, str(args.decode_s)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            print(done.stderr[-3000:])
            runs.append({"views": views, "error": done.stderr[-3000:]})
            continue
        run = {"views": views, "wall_s": time.perf_counter() - began, **json.loads(done.stdout.splitlines()[-1])}
        runs.append(run)
        print(f"\n{views} views, {args.gpus} ranks: waited {run['waited_for_ranks_s']:.2f} s for the ranks after "
              f"{run['views_made_s']:.2f} s of making views; pass {run['pass_s']:.2f} s; wall {run['wall_s']:.1f} s")
        for seconds, rank, event in run["timeline"]:
            print(f"  {seconds:8.2f} s  rank {rank}  {event}")
    if args.json:
        import torch

        meta = {"torch": torch.__version__, "date": time.strftime("%Y-%m-%d"), "gpus": args.gpus,
                "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu", "decode_s": args.decode_s}
        args.json.write_text(json.dumps({"meta": meta, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
