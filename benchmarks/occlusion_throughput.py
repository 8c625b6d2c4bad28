r"""Occlusion-sweep throughput of the causal benchmark: batched vs a naive loop.

The sweep of :mod:`fvjax.causal.occlusion` on EfficientNet-Lite0 (ImageNet
weights) at the paper's setting: a 224 px query, an occluder of 40 % of the
side (90 px) with stride 2, i.e. 68 x 68 = 4,624 occluded images, one unit of
--layer. Reports the first call (compilation included), the time of a full
sweep and occlusions per second, next to the obvious loop (one numpy-built
occluded image per jitted forward pass) timed on its first --naive positions
and extrapolated to the full grid; and checks that both give the same
activations on those positions.

  .venv/bin/python benchmarks/occlusion_throughput.py                    # paper setting
  .venv/bin/python benchmarks/occlusion_throughput.py --chunks=64,256    # compare chunk sizes
  XLA_FLAGS=--xla_force_host_platform_device_count=2 .venv/bin/python benchmarks/occlusion_throughput.py

Runs on JAX's default device (all devices of it: the chunk is sharded over them).
"""

import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", default="efficientnet_lite0")
  parser.add_argument("--layer", default="block9")
  parser.add_argument("--unit", type=int, default=0)
  parser.add_argument("--size", type=int, default=224)
  parser.add_argument("--fraction", type=float, default=0.4)
  parser.add_argument("--stride", type=int, default=2)
  parser.add_argument("--chunks", default="64", help="chunk sizes (occluded images per forward pass) to time")
  parser.add_argument("--naive", type=int, default=32, help="positions the naive loop is timed on")
  parser.add_argument("--photo", default="chelsea")
  parser.add_argument("--json", default=None, help="also write the results to this file")
  args = parser.parse_args()

  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from fvjax import data, models, parallel  # pylint: disable=g-import-not-at-top
  from fvjax.causal import occlusion  # pylint: disable=g-import-not-at-top

  model = models.load(args.model)
  image = data.sample_photos(args.size, [args.photo])[0][0]
  g = occlusion.grid(args.size, args.fraction, args.stride)
  mesh = parallel.data_mesh()
  params = parallel.replicate(model.params, mesh)
  device = f"{mesh.size} x {jax.devices()[0].device_kind}"
  print(f"{args.model} {args.layer}:{args.unit}, {args.size} px, occluder {g.side} px, stride {g.stride}: "
        f"{g.n} x {g.n} = {g.count} occlusions per query; {device} (host: {os.cpu_count()} CPU cores)")
  kw = dict(fraction=args.fraction, stride=args.stride, mesh=mesh, params=params)
  rows, maps = [], {}
  for chunk in map(int, args.chunks.split(",")):
    t = time.perf_counter()
    occlusion.sweep(model, image, args.layer, args.unit, chunk=chunk, **kw)
    first = time.perf_counter() - t
    t = time.perf_counter()
    maps[chunk] = occlusion.sweep(model, image, args.layer, args.unit, chunk=chunk, **kw)
    seconds = time.perf_counter() - t
    rows.append({"method": f"fvjax sweep, chunk {chunk}", "occlusions": g.count, "seconds": seconds,
                 "occlusions_per_s": g.count / seconds, "first_call_s": first, "full_sweep_s": seconds})
  naive = min(args.naive, g.count)
  occlusion.brute_force_sweep(model, image, args.layer, args.unit, fraction=args.fraction, stride=args.stride,
                              limit=1)  # compiles
  t = time.perf_counter()
  ref = occlusion.brute_force_sweep(model, image, args.layer, args.unit, fraction=args.fraction,
                                    stride=args.stride, limit=naive)
  seconds = time.perf_counter() - t
  rows.append({"method": "naive loop (1 image per call)", "occlusions": naive, "seconds": seconds,
               "occlusions_per_s": naive / seconds, "first_call_s": None,
               "full_sweep_s": g.count * seconds / naive})
  done = ~np.isnan(ref.reshape(-1))
  err = max(float(np.abs(m.reshape(-1)[done] - ref.reshape(-1)[done]).max()) for m in maps.values())
  print(f"{'method':>30} {'occlusions/s':>13} {'full sweep s':>13} {'first call s':>13}")
  for r in rows:
    first = "" if r["first_call_s"] is None else f"{r['first_call_s']:.1f}"
    extrapolated = " (extrapolated)" if r["occlusions"] < g.count else ""
    print(f"{r['method']:>30} {r['occlusions_per_s']:>13.1f} {r['full_sweep_s']:>13.1f} {first:>13}{extrapolated}")
  best = max(rows[:-1], key=lambda r: r["occlusions_per_s"])
  print(f"batched / naive = {best['occlusions_per_s'] / rows[-1]['occlusions_per_s']:.1f}x; "
        f"max |difference| on the {naive} shared positions: {err:.2e}; "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
  if args.json:
    with open(args.json, "w") as f:
      json.dump({"device": device, "grid": g._asdict(), "rows": rows, "max_abs_difference": err}, f, indent=2)


if __name__ == "__main__":
  main()
