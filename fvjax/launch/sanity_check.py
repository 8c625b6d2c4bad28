r"""The sanity check (paper section 3): layerwise path similarity of class
visualizations and natural images. The main job of fvjax.

  python -m fvjax.launch.sanity_check --flagfile=demo.flags
  python -m fvjax.launch.sanity_check --flagfile=imagenet.flags \
      --imagenet_dir=/data/imagenet/val --weights=/ckpt/inception5h.pth

Writes path_similarity.png, metrics.json (per layer: S_fv, S_same, S_diff,
normalized, 95% CIs), visualizations.png and the rendered visualizations into
--workdir. Rerun the same command to resume a killed run.
"""

from absl import flags

from fvjax import launch
from fvjax.launch import model_flags
import jax

from fvjax.experiments import sanity_check

_IMAGENET_DIR = flags.DEFINE_string(
    "imagenet_dir", None, "ImageNet-layout folder (one subfolder per class, named by WordNet ID, mapped to the "
    "model's logits by that ID); default: the embedded photos grouped by the model's own top-1 class.")
launch.check_image_folder(_IMAGENET_DIR)
_CLASS_MAP = flags.DEFINE_string("class_map", None, "For folders not named by WordNet ID: a file of "
                                 "'folder_name logit_index' lines.")
_PER_CLASS = flags.DEFINE_integer("per_class", 50, "Natural images per class (image folder).", lower_bound=1)
_NUM_CLASSES = flags.DEFINE_integer("num_classes", None, "Use only the first N classes (default: all).",
                                    lower_bound=1)
_CROPS = flags.DEFINE_integer("crops_per_photo", 8, "Embedded mode: augmented crops per photo (same-class images; "
                               "S_same needs at least one).", lower_bound=1)
_STEPS = flags.DEFINE_integer("steps", 512, "Optimisation steps per visualization (Lucid: 512).",
                              lower_bound=1)
_SIZE = flags.DEFINE_integer("size", None, "Visualization size in px (default: the model's input size).",
                             lower_bound=1, upper_bound=launch.MAX_SIZE)
_RENDER_BATCH = flags.DEFINE_integer("render_batch", 32, "Class units rendered together (sharded over devices).",
                                     lower_bound=1)
_LAYERS = flags.DEFINE_list("layers", [], "Layers to compare (default: all of the model's).")
_MEASURE = flags.DEFINE_enum("measure", "spearman", ["spearman", "pearson", "cosine"], "Similarity.")
_REDUCTION = flags.DEFINE_enum("reduction", "flatten", ["flatten", "channel_mean"],
                               "Compare whole activations or per-channel spatial means (paper: unverified).")
_NUM_OTHER = flags.DEFINE_integer("num_other", 1, "Other classes each class is compared with for S_diff.",
                                  lower_bound=1)
_BOOTSTRAP = flags.DEFINE_integer("num_bootstrap", 1000, "Bootstrap resamples over classes for the CIs.",
                                  lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "PRNG seed: the same seed gives the same images and results.")
_WORKDIR = flags.DEFINE_string("workdir", "workdir/sanity_check", "Output folder (resumes if it exists).")


def main(argv):
  del argv
  model = model_flags.load()
  key = jax.random.PRNGKey(_SEED.value)
  if _IMAGENET_DIR.value:
    classes = sanity_check.folder_classes(_IMAGENET_DIR.value, model, _PER_CLASS.value, _NUM_CLASSES.value,
                                          _CLASS_MAP.value)
  else:
    classes = sanity_check.embedded_classes(model, key, _CROPS.value, _NUM_CLASSES.value)
  metrics = sanity_check.run(model, classes, _WORKDIR.value, key=key, layers=_LAYERS.value or None,
                             steps=_STEPS.value, size=_SIZE.value, render_batch=_RENDER_BATCH.value,
                             measure=_MEASURE.value, reduction=_REDUCTION.value, num_other=_NUM_OTHER.value,
                             num_bootstrap=_BOOTSTRAP.value)
  print(f"{'layer':>10} {'S_fv':>7} {'S_same':>7} {'S_diff':>7} {'normalized':>10}")
  for layer in metrics["layers"]:
    m = metrics["per_layer"][layer]
    print(f"{layer:>10} {m['s_fv']:7.3f} {m['s_same']:7.3f} {m['s_diff']:7.3f} {m['normalized']:10.2f}")
  print(f"{metrics['num_classes']} classes in {metrics['seconds']:.0f} s; wrote {_WORKDIR.value}")


if __name__ == "__main__":
  launch.run(main)
