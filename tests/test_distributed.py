"""Two processes under jax.distributed (CPU, 127.0.0.1) give the single-process run's results, written once.

Each process stands for a host of its own: its own working directory (no shared disk), two forced CPU devices,
so the global mesh has four. The folder of natural images is read by both, each loading its share of every class.
"""

import json
import os
import socket
import subprocess
import sys
import time

import numpy as np
from PIL import Image
import pytest

from conftest import fast_compile_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 240  # seconds for one launch (both processes); a hung collective ends here, not in the suite's timeout


def _image_folder(root):
  """An ImageNet-layout folder for tiny_cnn: 4 colour-blob classes of 4, 3, 4 and 3 images (uneven shares), and
  its class map."""
  rng = np.random.default_rng(0)
  for c, n in enumerate((4, 3, 4, 3)):
    (root / f"n{c:03d}").mkdir(parents=True)
    base = rng.uniform(0, 255, size=(1, 1, 3))
    for i in range(n):
      img = np.clip(base + rng.normal(0, 30, size=(40, 40, 3)), 0, 255).astype(np.uint8)
      Image.fromarray(img).save(root / f"n{c:03d}" / f"{i}.png")
  class_map = root.parent / "classes.txt"
  class_map.write_text("".join(f"n{c:03d} {c + 1}\n" for c in range(4)))
  return root, class_map


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _env(devices):
  env = fast_compile_env(XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", JAX_PLATFORMS="cpu")
  env["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, env.get("PYTHONPATH")]))  # python -m launch.X from any cwd
  return env


def _run_all(commands, hosts, env):
  """Runs ``commands[i]`` in the folder ``hosts[i]`` (its stdout.txt and stderr.txt there), all at once; returns
  their exit statuses. When one fails, or after TIMEOUT seconds, every one still running is killed (a process
  whose peer died would otherwise wait in a collective)."""
  procs, files = [], []
  try:
    for host, command in zip(hosts, commands):
      host.mkdir(parents=True, exist_ok=True)
      files += [open(host / "stdout.txt", "w"), open(host / "stderr.txt", "w")]
      procs.append(subprocess.Popen(command, cwd=host, env=env, text=True, stdout=files[-2], stderr=files[-1]))
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
      if any(p.poll() not in (None, 0) for p in procs):
        break
      time.sleep(0.2)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
        p.wait()
    for f in files:
      f.close()
  return [p.returncode for p in procs]


def _launch(args, hosts):
  """Runs ``python -m args`` as ``len(hosts)`` processes of one jax.distributed run, process i in folder hosts[i]
  (one process: no --distributed); returns their stderr."""
  extra = [[]] if len(hosts) == 1 else [
      ["--distributed", f"--coordinator_address=127.0.0.1:{port}", f"--num_processes={len(hosts)}",
       f"--process_id={i}"] for port in [_free_port()] for i in range(len(hosts))]
  env = _env(2 if len(hosts) > 1 else 4)  # four devices in all, either way
  codes = _run_all([[sys.executable, "-m", *args, *flags] for flags in extra], hosts, env)
  logs = [(host / "stderr.txt").read_text() for host in hosts]
  for code, log in zip(codes, logs):
    assert code == 0, log[-3000:]
  return logs


def _files(folder):
  """The files under ``folder`` (relative paths), without the logs _launch writes."""
  return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                if p.is_file() and p.name not in ("stdout.txt", "stderr.txt"))


def _close(a, b):
  """Metrics equal up to float summation order (the run's seconds aside)."""
  if isinstance(a, dict):
    return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a if k != "seconds")
  if isinstance(a, list):
    return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
  if isinstance(a, float) or isinstance(b, float):
    return bool(np.isclose(a, b, rtol=1e-5, atol=1e-6))
  return a == b


@pytest.mark.slow
def test_sanity_check_on_two_processes_resumes_and_equals_one(tmp_path):
  root, class_map = _image_folder(tmp_path / "val")
  args = ["launch.sanity_check", "--model=tiny_cnn", f"--imagenet_dir={root}", f"--class_map={class_map}",
          "--per_class=4", "--steps=3", "--render_batch=2", "--num_other=2", "--num_bootstrap=20", "--workdir=work"]
  single, hosts = tmp_path / "single", [tmp_path / "host0", tmp_path / "host1"]
  _launch(args, [single])
  one = json.loads((single / "work" / "metrics.json").read_text())
  # A run killed after rendering the first chunk of class units and the similarity of one class, resumed on two
  # processes: process 0 holds the store (process 1 has no copy of it, as on a host without a shared disk), renders
  # the second chunk and computes three classes with the other process, each loading its share of every class.
  store = hosts[0] / "work" / "store"
  store.mkdir(parents=True)
  chunks = {tuple(json.loads(str(np.load(p)["__settings__"]))["units"]): p
            for p in (single / "work" / "store").glob("visualizations-*.npz")}
  assert sorted(chunks) == [(1, 2), (3, 4)]  # class units, rendered two at a time
  (store / chunks[1, 2].name).write_bytes(chunks[1, 2].read_bytes())
  [similarity] = (single / "work" / "store").glob("similarity-*.npz")
  progress = dict(np.load(similarity))
  progress["fv"][1:] = np.nan
  np.savez(store / similarity.name, **progress)
  logs = _launch(args, hosts)
  assert all(log.count("render tiny_cnn x2: 100%") == 1 for log in logs), logs[1][-2000:]  # the second chunk only
  two = json.loads((hosts[0] / "work" / "metrics.json").read_text())
  assert _close(two, one) and two["num_classes"] == 4
  # Process 0 wrote every file the single run wrote (the same store entries: the same settings); process 1 none.
  assert _files(hosts[0]) == _files(single) and "work/metrics.json" in _files(single)
  assert not _files(hosts[1])
  for name in _files(single):
    if name.endswith(".npz"):  # the rendered visualizations and the similarities per class
      a, b = np.load(single / name), np.load(hosts[0] / name)
      for k in a.files:
        if k != "__settings__":
          np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-6, err_msg=f"{name}: {k}")


FLAG_ERRORS = r"""
import sys
from absl import flags
from fvjax.launch import distributed_flags
for args in (["--process_id=1"], ["--num_processes=2", "--coordinator_address=h:1"], ["--distributed"],
             ["--distributed", "--coordinator_address=127.0.0.1:1", "--num_processes=2", "--process_id=2"]):
  flags.FLAGS.unparse_flags()
  flags.FLAGS(["x", *args])
  try:
    distributed_flags.initialize()
  except ValueError as e:
    print(e)
"""


def test_distributed_flags_refuse_in_one_sentence():
  env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "OMPI_", "TPU_", "JAX_COORDINATOR"))}
  out = subprocess.run([sys.executable, "-c", FLAG_ERRORS], cwd=ROOT, capture_output=True, text=True, timeout=120,
                       env=dict(env, JAX_PLATFORMS="cpu"))
  assert out.returncode == 0, out.stderr[-2000:]
  lines = out.stdout.splitlines()
  assert [line.split(";")[0] for line in lines] == [
      "--process_id applies only with --distributed",
      "--coordinator_address, --num_processes apply only with --distributed",
      "Cannot start the multi-process run: no cluster detected to take --coordinator_address, --num_processes, "
      "--process_id from",
      "--process_id=2 is not below --num_processes=2"], lines
  assert all("accepted: --distributed alone inside a Cloud TPU, SLURM or Open MPI job" in line for line in lines)


TRAIN = r"""
import glob, json, sys
import jax
if len(sys.argv) > 3:
  jax.distributed.initialize(sys.argv[3], 2, int(sys.argv[4]))
import numpy as np
from fvjax import data
from fvjax.fooling import detector as det, training
reads, load_image = [], data.load_image
data.load_image = lambda path, size: reads.append(path) or load_image(path, size)  # the files this process reads
rng = np.random.default_rng(0)
visualizations = rng.uniform(0, 1, (8, 32, 32, 3)).astype(np.float32) ** 3
natural = training.with_jpeg(training.files_sampler(sorted(glob.glob(f"{sys.argv[2]}/*/*.png")), 32), 0.5)
start = det.init(jax.random.PRNGKey(0), det.DetectorConfig(size=16))
trained, history = training.train(start, natural, training.mixture([training.pool_sampler(visualizations),
                                                                     training.pool_sampler(visualizations ** 2)]),
                                  key=jax.random.PRNGKey(1), steps=2, batch_size=8, checkpoint_every=1,
                                  state_dir=sys.argv[1], progress=False)
leaves = [np.ravel(l) for l in jax.tree_util.tree_leaves(trained.variables)]
np.save(f"{sys.argv[1]}/variables{jax.process_index()}.npy", np.concatenate(leaves))
print(json.dumps({"history": history, "reads": reads}))
"""


@pytest.mark.slow  # 45-100 s on 2 shared cores: the training step compiles in each process
def test_detector_training_on_two_processes_equals_one(tmp_path):
  """Data parallel over both processes' devices, each reading only the image files of its rows of every batch
  (with JPEG round trips); the orbax checkpoints on a shared disk."""
  (tmp_path / "train.py").write_text(TRAIN)
  root, _ = _image_folder(tmp_path / "val")
  single, shared = tmp_path / "single", tmp_path / "shared"
  shared.mkdir()
  port = _free_port()
  runs = [([single], [[str(single), str(root)]], 4), ([tmp_path / "p0", tmp_path / "p1"],
                                                      [[str(shared), str(root), f"127.0.0.1:{port}", str(i)]
                                                       for i in range(2)], 2)]
  for hosts, argvs, devices in runs:
    codes = _run_all([[sys.executable, str(tmp_path / "train.py"), *argv] for argv in argvs], hosts, _env(devices))
    for code, host in zip(codes, hosts):
      assert code == 0, (host / "stderr.txt").read_text()[-3000:]
  one = json.loads((single / "stdout.txt").read_text().splitlines()[-1])
  two = [json.loads((tmp_path / f"p{i}" / "stdout.txt").read_text().splitlines()[-1]) for i in range(2)]
  for i, out in enumerate(two):
    assert _close(out["history"], one["history"]) and [h["step"] for h in out["history"]] == [1, 2]
    np.testing.assert_allclose(np.load(shared / f"variables{i}.npy"), np.load(single / "variables0.npy"), rtol=1e-5,
                               atol=1e-6)
  # 4 natural images a step, 2 steps: each process read its 2 rows of each batch, together the single run's 8.
  assert len(one["reads"]) == 8 and [len(out["reads"]) for out in two] == [4, 4]
  assert sorted(two[0]["reads"] + two[1]["reads"]) == sorted(one["reads"])
  assert sorted(os.listdir(shared / "train_state")) == sorted(os.listdir(single / "train_state"))  # orbax's steps


CALIBRATE = r"""
import json, sys
import jax
jax.distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
import numpy as np
from fvjax import models
from fvjax import parallel
from fvjax.experiments import silent_units
from fvjax.fooling import silent
model = models.load("tiny_cnn")
images = np.random.default_rng(0).uniform(size=(13, 64, 64, 3)).astype(np.float32)
stream = lambda: parallel.process_items(images[i:i + 4] for i in range(1, 13, 4))  # 2 batches here, 1 there
filters = silent.fooling_filters(model, "conv3/conv", images[0], stream(), key=jax.random.PRNGKey(0), steps=2)
manipulated = silent.add_silent_units(model, "conv3/conv", filters)
(passes,) = silent_units.natural_passes(model, manipulated, "conv3/conv", filters, [images[1:]])  # 6 + 6 rows
first = parallel.from_first_process(images[:2] if jax.process_index() == 0 else images[:0])  # the other's: empty
print(json.dumps({"bias": filters.bias.tolist(), "silent": silent.silent_units(model, "conv1", stream()).tolist(),
                  "passes": {k: np.asarray(v).tolist() for k, v in passes.items()}, "first": first.tolist()}))
"""


@pytest.mark.slow
def test_silent_calibration_on_two_processes_equals_one(tmp_path):
  """Each process computes the maxima of its share of the calibration batches; combined, the single run's biases."""
  import jax  # pylint: disable=g-import-not-at-top
  from fvjax import models  # pylint: disable=g-import-not-at-top
  from fvjax.experiments import silent_units  # pylint: disable=g-import-not-at-top
  from fvjax.fooling import silent  # pylint: disable=g-import-not-at-top
  (tmp_path / "calibrate.py").write_text(CALIBRATE)
  hosts, port = [tmp_path / "p0", tmp_path / "p1"], _free_port()
  codes = _run_all([[sys.executable, str(tmp_path / "calibrate.py"), f"127.0.0.1:{port}", str(i)] for i in range(2)],
                   hosts, _env(1))
  for code, host in zip(codes, hosts):
    assert code == 0, (host / "stderr.txt").read_text()[-3000:]
  model = models.load("tiny_cnn")
  images = np.random.default_rng(0).uniform(size=(13, 64, 64, 3)).astype(np.float32)
  batches = [images[i:i + 4] for i in range(1, 13, 4)]
  filters = silent.fooling_filters(model, "conv3/conv", images[0], batches, key=jax.random.PRNGKey(0), steps=2)
  quiet = silent.silent_units(model, "conv1", batches)
  (passes,) = silent_units.natural_passes(model, silent.add_silent_units(model, "conv3/conv", filters), "conv3/conv",
                                          filters, [images[1:]])
  assert passes["count"] == 12
  for host in hosts:
    out = json.loads((host / "stdout.txt").read_text().splitlines()[-1])
    np.testing.assert_allclose(out["bias"], filters.bias, rtol=1e-6)
    assert out["silent"] == quiet.tolist()
    np.testing.assert_array_equal(out["first"], images[:2])  # process 0's value on both
    for k, v in passes.items():  # counts summed, maxima combined over the processes' halves
      np.testing.assert_allclose(out["passes"][k], v, rtol=1e-5, err_msg=k)


VALUES = r"""
import json, sys
import jax
jax.distributed.initialize(sys.argv[1], 2, int(sys.argv[2]))
from fvjax import data
from fvjax import models
from fvjax.causal import trials
from fvjax.experiments import causal_benchmark
reads, load_image = [], data.load_image
data.load_image = lambda path, size: reads.append(path) or load_image(path, size)  # the files this process reads
natural = trials.folder_set(sys.argv[3], size=64)
values = trials.unit_values(models.load("tiny_cnn"), "conv3", natural, batch_size=4).tolist()
share = len(reads)
first = natural._replace(count=1, sources=natural.sources[:1], names=natural.names[:1])  # process 1's share: empty
print(json.dumps({"values": values, "reads": reads[:share],
                  "first": trials.unit_values(models.load("tiny_cnn"), "conv3", first, batch_size=4).tolist()}))
config = causal_benchmark.Config(layer="conv3", units=("0",), observer_model="tiny_cnn", stride=8, top_k=2,
                                 conditions=("natural",), num_references=2, natural_dir=sys.argv[3], chunk=16)
causal_benchmark.run(models.load("tiny_cnn"), config, "work", progress=False)  # the whole benchmark: no crash
"""


@pytest.mark.slow
def test_causal_natural_values_on_two_processes_load_each_share(tmp_path):
  """The causal benchmark's natural pass: each process reads only its share of the folder, batch by batch (an
  empty share too), and gets every image's values, the single run's; the whole benchmark then writes its files
  once."""
  from fvjax import models  # pylint: disable=g-import-not-at-top
  from fvjax.causal import trials  # pylint: disable=g-import-not-at-top
  root, _ = _image_folder(tmp_path / "val")
  (tmp_path / "values.py").write_text(VALUES)
  hosts, port = [tmp_path / "p0", tmp_path / "p1"], _free_port()
  codes = _run_all([[sys.executable, str(tmp_path / "values.py"), f"127.0.0.1:{port}", str(i), str(root)]
                    for i in range(2)], hosts, _env(2))
  for code, host in zip(codes, hosts):
    assert code == 0, (host / "stderr.txt").read_text()[-3000:]
  natural, model = trials.folder_set(str(root), size=64), models.load("tiny_cnn")
  values = trials.unit_values(model, "conv3", natural, batch_size=4)
  first = trials.unit_values(model, "conv3", natural._replace(count=1), batch_size=4)
  outs = [json.loads((host / "stdout.txt").read_text().splitlines()[-1]) for host in hosts]
  for out in outs:
    np.testing.assert_allclose(out["values"], values, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out["first"], first, rtol=1e-5, atol=1e-6)
  assert [out["reads"] for out in outs] == [list(natural.names[:7]), list(natural.names[7:])]  # 14 images: 7 each
  written = [_files(host) for host in hosts]  # the benchmark's files: once, by process 0
  assert "work/metrics.json" in written[0] and "work/unit_0.json" in written[0] and not written[1], written
  [entry] = (hosts[0] / "work" / "store").glob("natural_values-*.npz")  # its natural pass: the values above
  np.testing.assert_allclose(np.load(entry)["values"], values, rtol=1e-5, atol=1e-6)
