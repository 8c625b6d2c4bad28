"""Writes the notebooks of colabs/ (outputs cleared): python colabs/build.py colabs

The notebooks' source is here; edit this file, rerun it, and commit both.
tests/test_colabs.py checks that the committed notebooks are what this writes.
"""

import os
import sys
import textwrap

import nbformat
from nbformat import v4

INSTALL = '''\
# Install fvjax on Colab from what you have (elsewhere this cell does nothing: install fvjax first,
# e.g. `pip install -e .` in a checkout). Looked for, in order: FVJAX_SOURCE if you set it (a pip URL
# such as git+https://github.com/<you>/fvjax, or a path), an uploaded wheel /content/fvjax-*.whl, an
# uploaded checkout /content/fvjax, a Drive folder MyDrive/fvjax (mount Drive first).
import glob
import os
import sys

FVJAX_SOURCE = None

if "google.colab" in sys.modules:
  import subprocess
  found = [FVJAX_SOURCE] if FVJAX_SOURCE else []
  found += sorted(glob.glob("/content/fvjax-*.whl"))[-1:]
  found += [d for d in ("/content/fvjax", "/content/drive/MyDrive/fvjax") if os.path.isfile(f"{d}/setup.cfg")]
  if not found:
    raise RuntimeError("fvjax not found: set FVJAX_SOURCE to a pip URL or path, upload a wheel fvjax-*.whl or a "
                       "checkout folder fvjax to /content, or put the checkout in Drive as MyDrive/fvjax.")
  subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", found[0]], check=True)
'''

DEVICES = '''\
# Which accelerator JAX found: TPU, GPU or CPU (Colab: Runtime > Change runtime type).
import glob
import os
import shutil
import jax

BACKEND = jax.default_backend().upper()
print(f"JAX {jax.__version__} on {BACKEND}: {jax.devices()}")
if BACKEND == "CPU" and shutil.which("nvidia-smi"):
  print("A GPU is attached but JAX does not use it: pip install -U 'jax[cuda12]', then restart the session.")
elif BACKEND == "CPU" and (os.environ.get("COLAB_TPU_ADDR") or os.environ.get("TPU_NAME") or glob.glob("/dev/accel*")):
  print("A TPU is attached but JAX does not use it: pip install -U 'jax[tpu]', then restart the session.")
elif BACKEND == "CPU":
  print("No accelerator: %s")
'''

CPU_HINT = "the full settings take a long time on a CPU; set REDUCED = True below for a quick run."

PARAMS_DOC = ("# Parameters (papermill: `-p REDUCED True`; the test tests/test_colabs.py injects `REDUCED = True`\n"
              "# in a cell right after this one). REDUCED shrinks steps and sizes so the notebook runs on a CPU in\n"
              "# seconds; the numbers it gives then only show that the pipeline works.\n")


def md(text):
  return v4.new_markdown_cell(textwrap.dedent(text).strip())


def code(text, tags=None):
  cell = v4.new_code_cell(textwrap.dedent(text).strip())
  if tags:
    cell.metadata["tags"] = list(tags)
  return cell


def notebook(cells, accelerator=True):
  nb = v4.new_notebook()
  nb.metadata = {
      "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
      "language_info": {"name": "python"},
      "colab": {"provenance": []},
  }
  if accelerator:
    nb.metadata["accelerator"] = "GPU"
  for i, cell in enumerate(cells):
    cell["id"] = f"cell-{i:02d}"  # stable ids: rebuilding changes nothing
  nb.cells = cells
  return nb


def common(title_md, params, cpu_hint=CPU_HINT):
  return [md(title_md), code(INSTALL), code(DEVICES % cpu_hint),
          code(PARAMS_DOC + textwrap.dedent(params).strip(), tags=["parameters"])]


FEATURE_VISUALIZATION = notebook(common(
    """
    # Feature visualization with fvjax

    *Don't trust your eyes: on the (un)reliability of feature visualizations* (Geirhos et al., ICML 2024)
    studies the feature visualizations of Olah et al. (2017) as implemented in Lucid: the image that
    maximises a unit's activation, found by gradient ascent on a Fourier-parameterised, colour-decorrelated
    image under random transformations (Adam, learning rate 0.05, 512 steps; the paper's section 1 and
    appendix). This notebook renders such visualizations with fvjax's engine, which uses Lucid's defaults.

    What it computes (`fvjax.experiments.visualize.run(model, config, workdir)`, the function behind
    `python -m launch.visualize`, with a `visualize.Config` like the one the script builds from its flags):
    one visualization per unit, all units in one jitted batch sharded over the available devices; the
    objective value (the unit's spatial-mean activation) at every threshold; and, for comparison, the
    largest value the same unit reaches on the natural photos that ship with scikit-image and scikit-learn.
    It writes `unit_<u>.png`, `grid.png` and `metrics.json` into `WORKDIR`.
    """, """
    REDUCED = False
    WORKDIR = None  # default: workdir/feature_visualization (workdir/feature_visualization_reduced when REDUCED)
    SEED = 0
    """) + [
    code('''
    # Settings derived from REDUCED: the config that `python -m launch.visualize` builds from its flags.
    from fvjax.experiments import visualize

    if REDUCED:  # a small random CNN, a few steps: seconds on a CPU
      MODEL = "tiny_cnn"
      CONFIG = visualize.Config(layer="conv3", units=(0, 1, 2, 3), steps=8, thresholds=(2, 4), seed=SEED,
                                redirected_relu_steps=0)  # size None: the model's input size (64 px)
    else:  # Lucid's settings, on the embedded ImageNet model, at its input size (224 px)
      MODEL = "efficientnet_lite0"
      # Lucid: 512 steps; the earlier snapshots show the optimisation. Lucid's render_vis redirects the ReLU
      # gradient for the first 16 steps (the launch default); 0 here shows the plain gradient's images.
      CONFIG = visualize.Config(layer="logits", units=(1, 94, 281, 417, 530, 967), steps=512, thresholds=(32, 128),
                                seed=SEED, redirected_relu_steps=0)
    WORKDIR = WORKDIR or ("workdir/feature_visualization_reduced" if REDUCED else "workdir/feature_visualization")
    CONFIG
    '''),
    code('''
    from fvjax import models

    model = models.load(MODEL)
    print(models.describe())
    print(f"\\n{model.name}: input {model.input_size}, range {model.input_range}, layers {', '.join(model.layers)}")
    '''),
    code('''
    metrics = visualize.run(model, CONFIG, WORKDIR)
    print(visualize.summary(metrics))
    print(f"rendered {len(CONFIG.units)} units x {CONFIG.steps} steps in {metrics['render_seconds']:.1f} s")
    '''),
    code('''
    from IPython.display import Image, display

    display(Image(filename=f"{WORKDIR}/grid.png"))
    '''),
    md("""
    The objective value of each visualization at every threshold, against the largest value the unit
    reaches on any of the natural photos: visualizations are optimised to drive a unit far beyond its
    natural range.
    """),
    code('''
    from fvjax import data

    photos, names = data.sample_photos(model.input_size[0])  # the natural images visualize.run compared with
    header = " ".join(f"{t:>9}" for t in metrics["thresholds"])
    print(f"{'unit':>28} {header}  natural max (photo)")
    for u, m in metrics["units"].items():
      name = f"{CONFIG.layer}:{u}" + (f" {model.labels[int(u)][:16]}" if CONFIG.layer == "logits" and model.labels else "")
      values = " ".join(f"{m['value_at_threshold'][str(t)]:9.2f}" for t in metrics["thresholds"])
      print(f"{name:>28} {values}  {m['natural_max']:.2f} ({names[m['natural_argmax']]})")
    '''),
    code('''
    # Each visualization next to the natural photo that activates the same unit most. (fvjax.plots draws
    # with matplotlib's file-only Agg backend, so figures are shown from the PNGs they are saved to.)
    import numpy as np
    from fvjax import plots

    cells, titles = [], []
    for u, m in metrics["units"].items():
      cells += [data.load_image(f"{WORKDIR}/unit_{u}.png", model.input_size[0]), photos[m["natural_argmax"]]]
      titles += [f"{CONFIG.layer}:{u} visualization", f"top photo: {names[m['natural_argmax']]}"]
    plots.save_figure(plots.labelled_grid(np.stack(cells), titles, cols=4), f"{WORKDIR}/top_photos.png")
    display(Image(filename=f"{WORKDIR}/top_photos.png"))
    '''),
], accelerator=True)


SANITY_CHECK = notebook(common(
    """
    # The sanity check: are feature visualizations processed like natural images?

    Paper section 3 (Geirhos et al., ICML 2024, *Don't trust your eyes*). If a class unit's feature
    visualization explained what the unit responds to, the network should process it along the same path
    as natural images of that class. For every class unit this notebook renders its visualization and, at
    every layer, measures the Spearman similarity of activations between the visualization and natural
    images of the class (S_fv), natural images of the class among themselves (S_same), and natural images
    of the class against those of other classes (S_diff). The normalized path similarity
    (S_fv - S_diff) / (S_same - S_diff) is 1 for "like a natural image of the class" and 0 for "like an image
    of another class", with 95% bootstrap intervals over classes. The paper finds it near 0 over the first
    two thirds of InceptionV1.

    What it computes (`fvjax.experiments.sanity_check.run(model, config, workdir)`, the function behind
    `python -m launch.sanity_check`, with a `sanity_check.Config`): the full settings are `launch/flags/demo.flags` (EfficientNet-Lite0,
    the shipped photos grouped by the model's own top-1 class, 8 augmented crops per photo, 128 steps at
    160 px). For the paper's setting set `IMAGENET_DIR` to an ImageNet-layout validation folder (and
    `MODEL = "inception_v1"` with `WEIGHTS` as in `launch/flags/imagenet.flags`). It writes
    `path_similarity.png`, `visualizations.png` and `metrics.json` into `WORKDIR`, and resumes when rerun.
    """, """
    REDUCED = False
    WORKDIR = None  # default: workdir/sanity_check (workdir/sanity_check_reduced when REDUCED)
    IMAGENET_DIR = None  # an ImageNet-layout folder (one subfolder per WordNet ID); None: the shipped photos
    CLASS_MAP = None  # for folders not named by WordNet ID: a file of 'folder_name logit_index' lines
    SEED = 0
    """) + [
    code('''
    # Settings derived from REDUCED: the config that `python -m launch.sanity_check` builds from its flags.
    from fvjax.experiments import sanity_check

    MODEL, WEIGHTS = "efficientnet_lite0", None  # imagenet.flags: inception_v1, its .pth
    if REDUCED:  # a small random CNN (its top-1 splits the photos into 2 classes), 4 steps: seconds on a CPU
      MODEL = "tiny_cnn"
      CONFIG = sanity_check.Config(steps=4, crops_per_photo=2, num_other=100, num_bootstrap=50, seed=SEED,
                                   imagenet_dir=IMAGENET_DIR, class_map=CLASS_MAP)
    else:  # launch/flags/demo.flags (layers: every layer of the model)
      CONFIG = sanity_check.Config(steps=128, size=160, crops_per_photo=8, num_other=100, seed=SEED,
                                   imagenet_dir=IMAGENET_DIR, class_map=CLASS_MAP)
    WORKDIR = WORKDIR or ("workdir/sanity_check_reduced" if REDUCED else "workdir/sanity_check")
    CONFIG
    '''),
    code('''
    from fvjax import models

    model = models.load(MODEL, **({} if WEIGHTS is None else {"weights": WEIGHTS}))
    classes = sanity_check.classes_from(model, CONFIG)  # what run() uses when given no classes
    print(f"{len(classes.classes)} classes:")
    for c, name in zip(classes.classes, classes.names):
      print(f"  {c:4d} {name}")
    '''),
    code('''
    metrics = sanity_check.run(model, CONFIG, WORKDIR, classes=classes)
    print(sanity_check.summary(metrics))
    '''),
    code('''
    from IPython.display import Image, display

    display(Image(filename=f"{WORKDIR}/path_similarity.png"))
    '''),
    md("The class visualizations the similarities were computed with:"),
    code('''
    display(Image(filename=f"{WORKDIR}/visualizations.png"))
    '''),
], accelerator=True)


FOOLING_CIRCUIT = notebook(common(
    """
    # The fooling circuit: visualizations that show anything, behaviour unchanged

    Paper section 2.1 (Geirhos et al., ICML 2024, *Don't trust your eyes*). A small classifier E tells
    natural images from feature visualizations. Wired into the network as
    `A = ReLU(F' - kE) + ReLU(D' + kE - k)`, it passes the original unit F through on natural images and a
    different unit D on visualizations, so every manipulated unit's visualization shows D's target (here an
    image: D is the linear unit `<x, target>`), while the network's output on natural images does not change.

    What it computes: first the detector (`fvjax.experiments.train_detector.run(model, config, workdir)`, behind
    `python -m launch.train_detector`): visualizations of many class logits rendered at several thresholds
    against the shipped photos with augmentation, units and photos split into training and held-out parts.
    Then the circuit (`fvjax.experiments.fooling_circuit.run(model, config, workdir)`, behind
    `python -m launch.fooling_circuit`, with a `fooling_circuit.Config`):
    visualizations of a few logits before and after the manipulation (`comparison.png`, `trajectory.png`),
    and in `metrics.json` top-1 agreement and logit differences on held-out natural images, the detector's
    accuracy, and the Pearson similarity of the visualizations to the target. Full settings:
    `launch/flags/fooling_demo.flags` (EfficientNet-Lite0; the detector takes about 14 min on a 2-core CPU,
    far less on a GPU; set `DETECTOR_DIR` to reuse one, e.g. `tests/fixtures/detector_lite0` in a checkout).
    """, """
    REDUCED = False
    WORKDIR = None  # default: workdir/fooling_circuit (workdir/fooling_circuit_reduced when REDUCED)
    DETECTOR_DIR = None  # a detector from launch.train_detector; None: train one into WORKDIR/detector_training
    SEED = 0
    """) + [
    code('''
    # Settings derived from REDUCED: the config that `python -m launch.fooling_circuit` builds from its flags
    # (the detector's training: the flags it shares with `python -m launch.train_detector`).
    from fvjax.experiments import fooling_circuit
    from fvjax.experiments import train_detector

    if REDUCED:  # a small random CNN, a 16 px detector trained for a few steps: seconds on a CPU
      MODEL = "tiny_cnn"
      TRAINING = train_detector.Config(num_units=2, num_heldout_units=2, thresholds=(2, 4), render_batch=2,
                                       heldout_photos=2, detector_size=16, detector_steps=8, detector_batch=8,
                                       detector_optimizer="adam", detector_learning_rate=1e-3, seed=SEED)
      CONFIG = fooling_circuit.Config(target_photo="astronaut", show_units=(0, 1), steps=(2, 4), natural_crops=1,
                                      detector=DETECTOR_DIR, training=TRAINING)
    else:  # launch/flags/fooling_demo.flags
      MODEL = "efficientnet_lite0"
      TRAINING = train_detector.Config(num_units=160, num_heldout_units=16, thresholds=(4, 8, 16, 32, 64, 128),
                                       render_size=96, render_batch=32, heldout_photos=4, detector_size=64,
                                       detector_steps=2000, detector_batch=32, detector_optimizer="adam",
                                       detector_learning_rate=1e-3, seed=SEED)
      # astronaut: a shipped photo every manipulated unit should show; k: the gate strength (paper: 250)
      CONFIG = fooling_circuit.Config(target_photo="astronaut", show_units=(1, 94, 281, 417, 530, 967),
                                      steps=(2, 4, 8, 16, 32), size=96, k=250.0, natural_crops=16,
                                      detector=DETECTOR_DIR, training=TRAINING)
    WORKDIR = WORKDIR or ("workdir/fooling_circuit_reduced" if REDUCED else "workdir/fooling_circuit")
    CONFIG
    '''),
    code('''
    from fvjax import models

    model = models.load(MODEL)
    # Disjoint random training and held-out logits (as train_detector.run draws them).
    train_units, heldout_units = train_detector.choose_units(model.num_classes, num_units=TRAINING.num_units,
                                                             num_heldout=TRAINING.num_heldout_units, seed=SEED)
    print(f"{model.name}: a new detector would train on {len(train_units)} logits; held out: {heldout_units}")
    '''),
    md("""
    ## 1. The natural-vs-visualization detector

    Skipped when `DETECTOR_DIR` is set (`fooling_circuit.run` trains one itself when the config names none).
    Rerunning resumes from `WORKDIR/detector_training`.
    """),
    code('''
    import dataclasses
    from fvjax.fooling import detector as det

    if CONFIG.detector is None:
      train_metrics = train_detector.run(model, CONFIG.training, f"{WORKDIR}/detector_training")
      print(train_detector.summary(train_metrics))
      print(f"held-out photos: {', '.join(train_metrics['heldout_natural'])} and crops")
      CONFIG = dataclasses.replace(CONFIG, detector=train_metrics["detector"])
    print(f"detector: {CONFIG.detector} ({det.load(CONFIG.detector).config})")
    '''),
    md("""
    ## 2. The circuit

    Natural images for the behaviour metrics are the photos the detector never saw (its `heldout.json`)
    with augmented crops, as in `launch.fooling_circuit`.
    """),
    code('''
    metrics = fooling_circuit.run(model, CONFIG, WORKDIR)
    print(fooling_circuit.summary(metrics))
    '''),
    md("Per shown logit: the original visualization, the manipulated model's visualization, the target."),
    code('''
    from IPython.display import Image, display

    display(Image(filename=f"{WORKDIR}/comparison.png"))
    '''),
    md("The manipulated visualizations at every threshold, and their similarity to the target:"),
    code('''
    display(Image(filename=f"{WORKDIR}/trajectory.png"))
    for t, a, o in zip(metrics["thresholds"], metrics["target_similarity_manipulated_by_threshold"],
                       metrics["target_similarity_original_by_threshold"]):
      print(f"{t:4d} steps: target similarity manipulated {a:.3f}, original {o:.3f}")
    '''),
], accelerator=True)


SILENT_UNITS = notebook(common(
    """
    # Silent units: visualizations of units that never fire on natural images

    Paper section 2.2 (Geirhos et al., ICML 2024, *Don't trust your eyes*). Every filter `w` of a convolution
    gets a parallel fooling filter, orthogonal to `w` and aimed at a target image, whose ReLU output is added
    to the unit; its bias is set so that it is exactly zero on every calibration image. The network's output
    on those images does not change by a single bit, yet each unit's visualization, which drives the unit as
    high as it can, now shows the target.

    What it computes (`fvjax.experiments.silent_units.run(model, config, workdir)`, the function behind
    `python -m launch.silent_units`, with a `silent_units.Config`): the fooling filters (target: the visualization of unit 0 of the layer,
    the paper's choice), visualizations of a few units before and after (`comparison.png`), and in
    `metrics.json` the fraction of calibration and held-out images on which the fooling units are silent,
    whether the calibration logits are bit-identical, top-1 agreement on held-out images, and the similarity
    of the visualizations to the target (pixels and the layer's input activation). Full settings:
    `launch/flags/silent_demo.flags` (EfficientNet-Lite0 `head/conv`, 14 photos plus crops for calibration,
    4 held out, 256 steps at 128 px); the paper uses ResNet-50 `layer4_1/conv2` and 50,000 calibration images.
    """, """
    REDUCED = False
    WORKDIR = None  # default: workdir/silent_units (workdir/silent_units_reduced when REDUCED)
    SEED = 0
    """) + [
    code('''
    # Settings derived from REDUCED: the config that `python -m launch.silent_units` builds from its flags.
    from fvjax.experiments import silent_units

    if REDUCED:  # a small random CNN, 8 steps: seconds on a CPU
      MODEL = "tiny_cnn"
      CONFIG = silent_units.Config(layer="conv3/conv", crops=1, target_steps=8, steps=8, units=(0, 1, 2, 3), seed=SEED)
    else:  # launch/flags/silent_demo.flags, with 4 crops per photo instead of 32 (a quicker calibration)
      MODEL = "efficientnet_lite0"
      CONFIG = silent_units.Config(layer="head/conv", crops=4, target_steps=256, steps=256, size=128,
                                   units=(1, 100, 500, 900), seed=SEED)
    WORKDIR = WORKDIR or ("workdir/silent_units_reduced" if REDUCED else "workdir/silent_units")
    CONFIG
    '''),
    code('''
    from fvjax import models

    model = models.load(MODEL)
    # As run() does: 4 shipped photos held out, the other 14 calibrate; CONFIG.crops augmented crops each (and
    # a blurred copy of every calibration crop).
    k_cal, k_held, _ = jax.random.split(jax.random.PRNGKey(CONFIG.seed), 3)
    calibration = silent_units.natural_images(CONFIG, model.input_size[0], k_cal, held=False)
    heldout = silent_units.natural_images(CONFIG, model.input_size[0], k_held, held=True)
    print(f"{model.name} {CONFIG.layer}: {len(calibration)} calibration images, {len(heldout)} held-out images")
    '''),
    code('''
    metrics = silent_units.run(model, CONFIG, WORKDIR, calibration=calibration, heldout=heldout)
    print(silent_units.summary(metrics))
    '''),
    md("Per unit: the original visualization and the manipulated one; last, the target."),
    code('''
    from IPython.display import Image, display

    display(Image(filename=f"{WORKDIR}/comparison.png"))
    '''),
], accelerator=True)


THEORY = notebook(common(
    """
    # The theory: what a feature visualization cannot tell

    Paper section 4 (Geirhos et al., ICML 2024, *Don't trust your eyes*). A feature visualization of a
    function f on [0,1]^d shows its argmax and argmin (and their values). Can one decide from it whether a
    query point x is a strong activator, f(x) > (max + min) / 2? The paper proves: not for general
    black-box functions, neural networks (also when trained by ERM), piecewise affine, monotonic, convex
    or L-Lipschitz functions (except small L); only for constant functions and affine functions of one
    variable.

    What it computes (`fvjax.experiments.theory.run(config, workdir)`, the function behind
    `python -m launch.theory`, with a `theory.Config`; the building blocks are in `fvjax.theory`): for every
    function class a *witness*, two functions of the class with the same argmax, argmin and extreme values
    that answer the query oppositely (so every decoder is wrong on one of them), checked numerically on a
    grid; the error rates of four decoders on functions sampled from the class; and for L-Lipschitz
    functions the share of queries the visualization leaves open. It writes `table.md`, `metrics.json` and
    one figure per class into `WORKDIR`. The full settings are the launch defaults (65 grid points per axis,
    1,000 sampled functions per class, ERM networks trained 3,000 steps; about 30 s on a CPU).
    """, """
    REDUCED = False
    WORKDIR = None  # default: workdir/theory (workdir/theory_reduced when REDUCED)
    SEED = 0
    """, cpu_hint="the full settings take about half a minute on a CPU anyway.") + [
    code('''
    # Settings derived from REDUCED: the config that `python -m launch.theory` builds from its flags.
    import dataclasses
    from fvjax.experiments import theory

    if REDUCED:  # a coarse grid, few samples, short ERM training
      CONFIG = theory.Config(grid=17, lipschitz=(1, 4), num_samples=20, num_trained=4, erm_steps=200, seed=SEED)
    else:  # `python -m launch.theory` defaults
      CONFIG = theory.Config(seed=SEED)
    WORKDIR = WORKDIR or ("workdir/theory_reduced" if REDUCED else "workdir/theory")
    CONFIG = dataclasses.replace(CONFIG, figure=(f"{WORKDIR}/witnesses.png",))  # the combined figure too
    CONFIG
    '''),
    code('''
    metrics = theory.run(CONFIG, WORKDIR)
    print(theory.summary(metrics).splitlines()[-1])
    '''),
    code('''
    from IPython.display import Image, Markdown, display
    from fvjax.theory import report

    display(Markdown(report.markdown_table(metrics["rows"])))
    '''),
    md("""
    Each witness: the two functions (2-D: heatmaps; 1-D: curves), their shared argmax (white triangle up)
    and argmin (down), the query (red cross) and the midpoint level.
    """),
    code('''
    display(Image(filename=f"{WORKDIR}/witnesses.png"))
    '''),
    md("""
    L-Lipschitz functions with range 1: the answer is forced only within R/(2L) of the extremes; elsewhere
    a witness exists. The share of queries left open grows with L (1 - 1/L in 1-D).
    """),
    code('''
    print(f"{'L':>4} {'forced radius':>14} {'open (1-D)':>11} {'open (2-D)':>11} {'error where forced':>19}")
    for d in metrics["lipschitz"]:
      two = "-" if d["witness_fraction_2d"] is None else f"{d['witness_fraction_2d']:.2f}"
      print(f"{d['L']:4g} {d['forced_radius']:14.3f} {d['witness_fraction_1d']:11.2f} {two:>11} "
            f"{d['error_in_forced_region']:19.3f}")
    '''),
], accelerator=False)


CAUSAL = notebook(common(
    """
    # The causal-understanding benchmark: can visualizations predict occlusion effects?

    Beyond the paper's own sections: the task of *How well do feature visualizations support causal understanding of CNN activations?*
    (Zimmermann et al., NeurIPS 2021), scored by a machine observer in the manner of Zimmermann, Klindt &
    Brendel (2024) instead of human participants. For a unit and one of its top-activating natural images,
    a square occluder (40 % of the side, filled with the patch's mean colour) slides over the image; the
    trial shows the occlusion that leaves the highest activation (correct) and the one that leaves the
    lowest. The observer sees reference images of the unit (the 2021 study's conditions: synthetic feature
    visualizations, natural exemplars from rank bins below the queries, a mix of both, blurred exemplars with
    the unit's patch kept sharp, or none) and picks the choice whose image is more similar to them in a
    feature space.

    What it computes (`fvjax.experiments.causal_benchmark.run(model, config, workdir)`, the function behind
    `python -m launch.causal_benchmark`, with a `causal_benchmark.Config`; its building blocks are in
    `fvjax.causal`): the
    occlusion sweep of every query as one jitted, chunked, device-sharded pass; the trials; the references
    of each condition; the observer's accuracy and calibrated score per condition with 95 % intervals over
    units (`metrics.json`, `accuracy.png`), and one panel per trial. Full settings:
    `launch/flags/causal_demo.flags` (EfficientNet-Lite0 `block9`, 6 units, the shipped photos with crops);
    the paper uses 18 InceptionV1 units, 20 ImageNet queries each and stride 2 (4,624 occlusions per query).
    """, """
    REDUCED = False
    WORKDIR = None  # default: workdir/causal_benchmark (workdir/causal_benchmark_reduced when REDUCED)
    SEED = 0
    """) + [
    code('''
    # Settings derived from REDUCED: the config that `python -m launch.causal_benchmark` builds from its flags.
    from fvjax.experiments import causal_benchmark

    if REDUCED:  # a small random CNN, 4 x 4 occluder positions, 2-step references: seconds on a CPU
      MODEL = "tiny_cnn"
      CONFIG = causal_benchmark.Config(layer="conv3", units=("0-1",), observer_model="tiny_cnn", stride=12, top_k=2,
                                       num_references=3, steps=2, crops_per_photo=0, chunk=16, seed=SEED)
    else:  # launch/flags/causal_demo.flags
      MODEL = "efficientnet_lite0"
      CONFIG = causal_benchmark.Config(layer="block9", units=("0-5",), observer_model="efficientnet_lite0",
                                       stride=8, top_k=3, num_references=9, steps=64, render_size=128,
                                       blur_stride=32, crops_per_photo=8, chunk=64, seed=SEED)
    WORKDIR = WORKDIR or ("workdir/causal_benchmark_reduced" if REDUCED else "workdir/causal_benchmark")
    CONFIG
    '''),
    code('''
    from fvjax import models

    model = models.load(MODEL)
    observer = causal_benchmark.observer_for(model, CONFIG)  # the studied model itself when it names it
    natural = causal_benchmark.natural_set(model, CONFIG)
    print(f"{model.name} {CONFIG.layer} units {CONFIG.units}; {natural.count} natural images; observer {observer.name}")
    '''),
    code('''
    metrics = causal_benchmark.run(model, CONFIG, WORKDIR, observer=observer, natural=natural)
    print(causal_benchmark.summary(metrics))
    '''),
    md("Accuracy per condition, with the human accuracies of the 2021 paper as marks; then one trial."),
    code('''
    import glob
    from IPython.display import Image, display

    display(Image(filename=f"{WORKDIR}/accuracy.png"))
    display(Image(filename=sorted(glob.glob(f"{WORKDIR}/trials/*.png"))[0]))
    '''),
], accelerator=True)

NOTEBOOKS = {
    "feature_visualization.ipynb": FEATURE_VISUALIZATION,
    "fooling_circuit.ipynb": FOOLING_CIRCUIT,
    "silent_units.ipynb": SILENT_UNITS,
    "sanity_check.ipynb": SANITY_CHECK,
    "theory.ipynb": THEORY,
    "causal_benchmark.ipynb": CAUSAL,
}


def main(out_dir):
  os.makedirs(out_dir, exist_ok=True)
  for name, nb in NOTEBOOKS.items():
    nbformat.validate(nb)
    with open(os.path.join(out_dir, name), "w") as f:
      nbformat.write(nb, f)


if __name__ == "__main__":
  main(sys.argv[1])
