"""Bad command lines end in one sentence and exit status 2 (issue 15).

Each bad input must print exactly one line, ``error: <what is accepted>``, on
stderr: no traceback, no absl "FATAL Flags parsing error" block, and no workdir
left behind that did not exist before the run. Every case is refused before
any model is compiled (the table stays fast: one jax import per row).
"""

import os
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

from conftest import fast_compile_env
from fvjax import launch
from fvjax import models
from fvjax.models import record

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSFS = "/sys/fvjax_cli_errors"

# (script, arguments, a piece of the expected sentence). Arguments are formatted with the playground's paths;
# every script but classify (which writes nothing) also gets --workdir={out} unless the row gives its own.
CASES = [
    ("visualize", ["--units=5-2"], "'5-2'"),
    ("visualize", ["--units="], "--units"),
    ("fooling_circuit", ["--offset=3", "--show_units=9-4"], "'9-4'"),
    ("sanity_check", ["--size=100000"], "[1, 4096]"),
    ("visualize", ["--workdir={afile}"], "is a file"),
    ("visualize", ["--workdir={afile}/run"], "is a file"),
    ("visualize", ["--workdir={locked}/run"], "--workdir"),
    ("fooling_circuit", ["--offset=3", "--workdir={afile}"], "is a file"),
    ("sanity_check", ["--crops_per_photo=0"], "--crops_per_photo"),
    ("sanity_check", ["--render_batch=0"], "--render_batch"),
    ("train_detector", ["--thresholds=x"], "'x'"),
    ("sanity_check", ["--num_bootstrap=-5"], "--num_bootstrap"),
    ("sanity_check", ["--num_classes=0"], "--num_classes"),
    ("sanity_check", ["--imagenet_dir={empty}"], "n01440764"),
    ("causal_benchmark", ["--natural_dir={unreadable}"], "unreadable/a'"),
    ("visualize", ["--model=Tiny_CNN"], "Did you mean 'tiny_cnn'?"),
    ("theory", ["--grid=abc"], "--grid"),
    ("silent_units", ["--target_steps=0"], "--target_steps"),
    ("classify", ["--top=0"], "--top"),
    ("theory", ["--flagfile=nosuch"], "shipped flagfile (causal_demo, causal_imagenet, demo,"),
]


@pytest.fixture
def playground(tmp_path):
  """Paths the bad inputs point at: a file, empty class folders, unreadable images, an unwritable folder."""
  (tmp_path / "afile").write_text("not a folder")
  for wnid in ("n01440764", "n02119789"):
    (tmp_path / "empty" / wnid).mkdir(parents=True)
  (tmp_path / "unreadable" / "a").mkdir(parents=True)
  (tmp_path / "unreadable" / "a" / "0.jpg").write_bytes(b"not an image")
  Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "unreadable" / "readme.png")  # not in a class
  if os.geteuid() == 0:  # root writes anywhere on a normal file system; sysfs refuses new folders even to root
    locked = SYSFS
  else:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
  paths = {"afile": tmp_path / "afile", "empty": tmp_path / "empty", "unreadable": tmp_path / "unreadable",
           "locked": locked, "out": tmp_path / "out" / "run"}
  before = sorted(os.listdir(tmp_path))
  yield paths, before
  if locked != SYSFS:
    locked.chmod(0o755)  # so that pytest can remove tmp_path


@pytest.mark.parametrize("script,args,expected", CASES, ids=[f"{s}:{' '.join(a)}" for s, a, _ in CASES])
def test_bad_input_is_one_sentence_exit_2_and_no_workdir(playground, tmp_path, script, args, expected):
  paths, before = playground
  args = [a.format(**paths) for a in args]
  if script != "theory":
    args.insert(0, "--model=tiny_cnn")
  if script != "classify" and not any(a.startswith("--workdir=") for a in args):
    args.append(f"--workdir={paths['out']}")
  proc = subprocess.run([sys.executable, "-m", f"launch.{script}", *args], cwd=ROOT, env=fast_compile_env(),
                        capture_output=True, text=True, timeout=300)
  lines = proc.stderr.splitlines()
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert "Traceback" not in proc.stderr and len(lines) == 1, proc.stderr[-3000:]
  assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
  assert sorted(os.listdir(tmp_path)) == before  # nothing created: no workdir, no parents of it
  assert os.path.isfile(paths["afile"]) and not os.path.exists(str(paths["locked"]) + "/run")


def test_parse_units_refuses_reversed_ranges_and_bad_items():
  assert launch.parse_units(["3", "10-12", " 7 "]) == [3, 10, 11, 12, 7]
  assert launch.parse_units([]) == []
  with pytest.raises(ValueError, match=r"'5-2'.*accepted: .*a <= b"):
    launch.parse_units(["5-2"])
  for bad in ("x", "", "-3", "1-2-3"):
    with pytest.raises(ValueError, match="accepted"):
      launch.parse_units([bad])


def test_model_and_layer_names_are_suggested_case_insensitively():
  with pytest.raises(KeyError, match="Did you mean 'tiny_cnn'"):
    models.load("Tiny_CNN")
  message = record.unknown_name_message("layer", "CONV3", ("conv1", "conv2", "conv3", "logits"))
  assert message.endswith("Did you mean 'conv3'?"), message
  assert "Did you mean" not in record.unknown_name_message("model", "vgg16", models.names())
