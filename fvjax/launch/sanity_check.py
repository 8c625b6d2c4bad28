r"""The sanity check (paper section 3): layerwise path similarity of class
visualizations and natural images. The main job of fvjax.

  python -m fvjax.launch.sanity_check --flagfile=demo.flags
  python -m fvjax.launch.sanity_check --flagfile=imagenet.flags \
      --imagenet_dir=/data/imagenet/val --weights=/ckpt/inception5h.pth

Writes path_similarity.png, metrics.json (per layer: S_fv, S_same, S_diff,
normalized, 95% CIs), visualizations.png and the rendered visualizations into
--workdir. Rerun the same command to resume a killed run.
"""

from fvjax import launch
from fvjax.experiments import sanity_check
from fvjax.launch import model_flags

main = launch.experiment_script(__name__, sanity_check, "workdir/sanity_check",
                                "Output folder (resumes if it exists).", model=model_flags)
