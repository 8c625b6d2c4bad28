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

    What it computes (`fvjax.experiments.visualize.run`, the function behind `python -m launch.visualize`):
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
    # Settings derived from REDUCED.
    if REDUCED:  # a small random CNN, a few steps: seconds on a CPU
      MODEL, LAYER, UNITS = "tiny_cnn", "conv3", [0, 1, 2, 3]
      THRESHOLDS = (2, 4, 8)
      SIZE = None  # the model's input size (64 px)
      REDIRECTED_RELU_STEPS = 0
    else:  # `python -m launch.visualize` with Lucid's settings, on the embedded ImageNet model
      MODEL, LAYER, UNITS = "efficientnet_lite0", "logits", [1, 94, 281, 417, 530, 967]
      THRESHOLDS = (32, 128, 512)  # Lucid: 512 steps; the earlier snapshots show the optimisation
      SIZE = None  # the model's input size (224 px)
      REDIRECTED_RELU_STEPS = 0  # as launch.visualize; Lucid's render_vis uses 16 (it avoids grey images)
    WORKDIR = WORKDIR or ("workdir/feature_visualization_reduced" if REDUCED else "workdir/feature_visualization")
    '''),
    code('''
    from fvjax import models

    model = models.load(MODEL)
    print(models.describe())
    print(f"\\n{model.name}: input {model.input_size}, range {model.input_range}, layers {', '.join(model.layers)}")
    '''),
    code('''
    from fvjax.experiments import visualize

    metrics = visualize.run(model, LAYER, UNITS, WORKDIR, key=jax.random.PRNGKey(SEED), thresholds=THRESHOLDS,
                            size=SIZE, redirected_relu_steps=REDIRECTED_RELU_STEPS)
    print(f"rendered {len(UNITS)} units x {THRESHOLDS[-1]} steps in {metrics['render_seconds']:.1f} s")
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
      name = f"{LAYER}:{u}" + (f" {model.labels[int(u)][:16]}" if LAYER == "logits" and model.labels else "")
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
      titles += [f"{LAYER}:{u} visualization", f"top photo: {names[m['natural_argmax']]}"]
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

    What it computes (`fvjax.experiments.sanity_check.run`, the function behind
    `python -m launch.sanity_check`): the full settings are `launch/flags/demo.flags` (EfficientNet-Lite0,
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
    # Settings derived from REDUCED.
    MODEL, WEIGHTS, PER_CLASS = "efficientnet_lite0", None, 50  # imagenet.flags: inception_v1, its .pth
    MEASURE, REDUCTION = "spearman", "flatten"
    if REDUCED:  # a small random CNN (its top-1 splits the photos into 2 classes), 4 steps: seconds on a CPU
      MODEL = "tiny_cnn"
      STEPS, SIZE, CROPS_PER_PHOTO, NUM_CLASSES, NUM_OTHER = 4, None, 2, None, 100
      LAYERS, NUM_BOOTSTRAP, RENDER_BATCH = None, 50, 32
    else:  # launch/flags/demo.flags
      STEPS, SIZE, CROPS_PER_PHOTO, NUM_CLASSES, NUM_OTHER = 128, 160, 8, None, 100
      LAYERS, NUM_BOOTSTRAP, RENDER_BATCH = None, 1000, 32  # None: every layer of the model
    WORKDIR = WORKDIR or ("workdir/sanity_check_reduced" if REDUCED else "workdir/sanity_check")
    '''),
    code('''
    from fvjax import models
    from fvjax.experiments import sanity_check

    model = models.load(MODEL, **({} if WEIGHTS is None else {"weights": WEIGHTS}))
    key = jax.random.PRNGKey(SEED)
    if IMAGENET_DIR:
      classes = sanity_check.folder_classes(IMAGENET_DIR, model, PER_CLASS, NUM_CLASSES, CLASS_MAP)
    else:
      classes = sanity_check.embedded_classes(model, key, CROPS_PER_PHOTO, NUM_CLASSES)
    print(f"{len(classes.classes)} classes:")
    for c, name in zip(classes.classes, classes.names):
      print(f"  {c:4d} {name}")
    '''),
    code('''
    metrics = sanity_check.run(model, classes, WORKDIR, key=key, layers=LAYERS, steps=STEPS, size=SIZE,
                               render_batch=RENDER_BATCH, measure=MEASURE, reduction=REDUCTION, num_other=NUM_OTHER,
                               num_bootstrap=NUM_BOOTSTRAP)
    print(f"{'layer':>10} {'S_fv':>7} {'S_same':>7} {'S_diff':>7} {'normalized':>10}  95% CI")
    for layer in metrics["layers"]:
      m = metrics["per_layer"][layer]
      lo, hi = m["normalized_ci"]
      print(f"{layer:>10} {m['s_fv']:7.3f} {m['s_same']:7.3f} {m['s_diff']:7.3f} {m['normalized']:10.2f}  [{lo:.2f}, {hi:.2f}]")
    print(f"{metrics['num_classes']} classes in {metrics['seconds']:.0f} s")
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

    What it computes: first the detector (`fvjax.experiments.train_detector.run`, behind
    `python -m launch.train_detector`): visualizations of many class logits rendered at several thresholds
    against the shipped photos with augmentation, units and photos split into training and held-out parts.
    Then the circuit (`fvjax.experiments.fooling_circuit.run`, behind `python -m launch.fooling_circuit`):
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
    # Settings derived from REDUCED.
    TARGET_PHOTO = "astronaut"  # a shipped photo every manipulated unit should show
    K = 250.0  # gate strength (paper: 250)
    if REDUCED:  # a small random CNN, a 16 px detector trained for a few steps: seconds on a CPU
      MODEL, NUM_UNITS, NUM_HELDOUT_UNITS = "tiny_cnn", 2, 2
      DETECTOR_THRESHOLDS, RENDER_SIZE, RENDER_BATCH = (2, 4), None, 2
      DETECTOR_SIZE, DETECTOR_STEPS, DETECTOR_BATCH = 16, 8, 8
      HELDOUT_PHOTOS, NATURAL_CROPS = 2, 1
      SHOW_UNITS, THRESHOLDS, SIZE = [0, 1], (2, 4), None
    else:  # launch/flags/fooling_demo.flags
      MODEL, NUM_UNITS, NUM_HELDOUT_UNITS = "efficientnet_lite0", 160, 16
      DETECTOR_THRESHOLDS, RENDER_SIZE, RENDER_BATCH = (4, 8, 16, 32, 64, 128), 96, 32
      DETECTOR_SIZE, DETECTOR_STEPS, DETECTOR_BATCH = 64, 2000, 32
      HELDOUT_PHOTOS, NATURAL_CROPS = 4, 16
      SHOW_UNITS, THRESHOLDS, SIZE = [1, 94, 281, 417, 530, 967], (2, 4, 8, 16, 32), 96
    DETECTOR_OPTIMIZER, DETECTOR_LEARNING_RATE = "adam", 1e-3
    WORKDIR = WORKDIR or ("workdir/fooling_circuit_reduced" if REDUCED else "workdir/fooling_circuit")
    '''),
    code('''
    from fvjax import models
    from fvjax.experiments import train_detector

    model = models.load(MODEL)
    key = jax.random.PRNGKey(SEED)
    # Disjoint random training and held-out logits (as launch.train_detector draws them).
    train_units, heldout_units = train_detector.choose_units(model.num_classes, num_units=NUM_UNITS,
                                                             num_heldout=NUM_HELDOUT_UNITS, seed=SEED)
    print(f"{model.name}: a new detector would train on {len(train_units)} logits; held out: {heldout_units}")
    '''),
    md("""
    ## 1. The natural-vs-visualization detector

    Skipped when `DETECTOR_DIR` is set. Rerunning resumes from `WORKDIR/detector_training`.
    """),
    code('''
    from fvjax.fooling import detector as det
    from fvjax.fooling import training

    detector_dir = DETECTOR_DIR
    if detector_dir is None:
      train_metrics = train_detector.run(
          model, f"{WORKDIR}/detector_training", key=key, train_units=train_units, heldout_units=heldout_units,
          thresholds=DETECTOR_THRESHOLDS, size=RENDER_SIZE, render_batch=RENDER_BATCH,
          num_heldout_photos=HELDOUT_PHOTOS, config=det.DetectorConfig(size=DETECTOR_SIZE), steps=DETECTOR_STEPS,
          batch_size=DETECTOR_BATCH, tx=training.optimizer(DETECTOR_OPTIMIZER, DETECTOR_LEARNING_RATE))
      detector_dir = train_metrics["detector"]
      print(f"held-out accuracy: natural {train_metrics['accuracy_natural']:.3f} "
            f"({train_metrics['num_heldout_natural']} images: {', '.join(train_metrics['heldout_natural'])} and crops), "
            f"visualizations {train_metrics['accuracy_visualization']:.3f} "
            f"({train_metrics['num_heldout_visualizations']} images)")
    detector = det.load(detector_dir)
    print(f"detector: {detector_dir} ({detector.config})")
    '''),
    md("""
    ## 2. The circuit

    Natural images for the behaviour metrics are the photos the detector never saw (its `heldout.json`)
    with augmented crops, as in `launch.fooling_circuit`.
    """),
    code('''
    from fvjax import data
    from fvjax.experiments import fooling_circuit
    from fvjax.fooling import circuit

    natural, held_names = fooling_circuit.heldout_natural(detector_dir, model.input_size[0], NATURAL_CROPS, key)
    target = circuit.image_target(data.sample_photos(SIZE or model.input_size[0], [TARGET_PHOTO])[0][0])
    metrics = fooling_circuit.run(model, detector, target, WORKDIR, key=key, units=SHOW_UNITS, natural_images=natural,
                                  thresholds=THRESHOLDS, size=SIZE, k=K)
    for name in ("num_natural_images", "natural_top1_agreement", "natural_max_abs_logit_diff",
                 "detector_accuracy_natural", "detector_accuracy_visualization",
                 "target_similarity_manipulated", "target_similarity_original"):
      print(f"{name:>32}: {metrics[name]}")
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

    What it computes (`fvjax.experiments.silent_units.run`, the function behind
    `python -m launch.silent_units`): the fooling filters (target: the visualization of unit 0 of the layer,
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
    # Settings derived from REDUCED.
    if REDUCED:  # a small random CNN, 8 steps: seconds on a CPU
      MODEL, LAYER, CROPS = "tiny_cnn", "conv3/conv", 1
      TARGET_STEPS, STEPS, SIZE, UNITS = 8, 8, None, [0, 1, 2, 3]
    else:  # launch/flags/silent_demo.flags
      MODEL, LAYER, CROPS = "efficientnet_lite0", "head/conv", 4
      TARGET_STEPS, STEPS, SIZE, UNITS = 256, 256, 128, [1, 100, 500, 900]
    WORKDIR = WORKDIR or ("workdir/silent_units_reduced" if REDUCED else "workdir/silent_units")
    '''),
    code('''
    from fvjax import models
    from fvjax.experiments import silent_units

    model = models.load(MODEL)
    size = model.input_size[0]
    k_cal, k_held, k_run = jax.random.split(jax.random.PRNGKey(SEED), 3)
    # As launch.silent_units: 4 shipped photos held out, the other 14 calibrate; CROPS augmented crops each.
    calibration = silent_units.shipped_photos(size, k_cal, CROPS, held=False)
    heldout = silent_units.shipped_photos(size, k_held, CROPS, held=True)
    print(f"{model.name} {LAYER}: {len(calibration)} calibration images, {len(heldout)} held-out images")
    '''),
    code('''
    metrics = silent_units.run(model, LAYER, WORKDIR, key=k_run, calibration=calibration, heldout=heldout, units=UNITS,
                               target_steps=TARGET_STEPS, thresholds=(STEPS,), size=SIZE)
    for name in ("num_units", "calibration_silent_fraction", "heldout_silent_fraction",
                 "calibration_logits_bit_identical", "natural_max_abs_logit_diff", "natural_top1_agreement",
                 "target_similarity_manipulated", "target_similarity_original",
                 "target_activation_similarity_manipulated", "target_activation_similarity_original"):
      print(f"{name:>42}: {metrics[name]}")
    print(f"naturally silent units of {LAYER} before any manipulation: {len(metrics['naturally_silent_units'])}")
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

    What it computes (`fvjax.theory.report.run`, the function behind `python -m launch.theory`): for every
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
    # Settings derived from REDUCED.
    if REDUCED:  # a coarse grid, few samples, short ERM training
      GRID, LIPSCHITZ, NUM_SAMPLES, NUM_TRAINED, ERM_STEPS = 17, (1, 4), 20, 4, 200
    else:  # `python -m launch.theory` defaults
      GRID, LIPSCHITZ, NUM_SAMPLES, NUM_TRAINED, ERM_STEPS = 65, (1, 2, 4, 8, 16), 1000, 32, 3000
    WORKDIR = WORKDIR or ("workdir/theory_reduced" if REDUCED else "workdir/theory")
    '''),
    code('''
    from fvjax.theory import report

    metrics = report.run(WORKDIR, key=jax.random.PRNGKey(SEED), grid_size=GRID, lipschitz=LIPSCHITZ,
                         num_samples=NUM_SAMPLES, num_trained=NUM_TRAINED, erm_steps=ERM_STEPS,
                         figure_paths=[f"{WORKDIR}/witnesses.png"])
    agree = sum(r["reliable"] == r["paper_reliable"] for r in metrics["rows"])
    print(f"measured verdict agrees with the paper for {agree} of {len(metrics['rows'])} classes")
    '''),
    code('''
    from IPython.display import Image, Markdown, display

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

    What it computes (`fvjax.causal.run`, the function behind `python -m launch.causal_benchmark`): the
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
    # Settings derived from REDUCED.
    if REDUCED:  # a small random CNN, 4 x 4 occluder positions, 2-step references: seconds on a CPU
      MODEL, LAYER, UNITS, OBSERVER = "tiny_cnn", "conv3", [0, 1], "tiny_cnn"
      STRIDE, TOP_K, NUM_REFERENCES, STEPS, RENDER_SIZE, CROPS, CHUNK = 12, 2, 3, 2, None, 0, 16
      BLUR_STRIDE = None
    else:  # launch/flags/causal_demo.flags
      MODEL, LAYER, UNITS, OBSERVER = "efficientnet_lite0", "block9", [0, 1, 2, 3, 4, 5], "efficientnet_lite0"
      STRIDE, TOP_K, NUM_REFERENCES, STEPS, RENDER_SIZE, CROPS, CHUNK = 8, 3, 9, 64, 128, 8, 64
      BLUR_STRIDE = 32
    WORKDIR = WORKDIR or ("workdir/causal_benchmark_reduced" if REDUCED else "workdir/causal_benchmark")
    '''),
    code('''
    from fvjax import models
    from fvjax.causal import trials

    model = models.load(MODEL)
    observer = model if OBSERVER == MODEL else models.load(OBSERVER)
    key = jax.random.PRNGKey(SEED)
    natural = trials.embedded_set(jax.random.fold_in(key, 1), model.input_size[0], CROPS)
    print(f"{model.name} {LAYER} units {UNITS}; {natural.count} natural images; observer {observer.name}")
    '''),
    code('''
    from fvjax import causal

    metrics = causal.run(model, LAYER, UNITS, WORKDIR, key=key, natural=natural, observer=observer,
                         stride=STRIDE, top_k=TOP_K, num_references=NUM_REFERENCES, steps=STEPS,
                         render_size=RENDER_SIZE, blur_stride=BLUR_STRIDE, chunk=CHUNK)
    print(f"{metrics['num_units']} units, {metrics['num_trials']} trials, "
          f"{metrics['occluder']['positions']} occlusions per query")
    for condition, m in metrics["conditions"].items():
      print(f"{condition:>10}: accuracy {m['accuracy']:.3f} {m['accuracy_ci95']}, calibrated {m['calibrated']:.3f}")
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
