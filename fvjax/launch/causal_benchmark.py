r"""The causal-understanding benchmark (Zimmermann et al., NeurIPS 2021) with a
machine observer instead of human participants.

  python -m fvjax.launch.causal_benchmark --flagfile=causal_demo.flags
  python -m fvjax.launch.causal_benchmark --flagfile=causal_imagenet.flags \
      --weights=/ckpt/inception5h.pth --natural_dir=/data/imagenet/val
  python -m fvjax.launch.causal_benchmark --model=inception_v1 --weights=/ckpt/inception5h.pth \
      --layer=mixed4a_pre_relu --units=257,486 --natural_dir=/data/imagenet/val --workdir=/tmp/causal

Conditions (--conditions): synthetic, natural, mixed (5 natural + 4 synthetic),
blurred (natural references blurred except the patch that drives the unit)
and none, built with the 2021 study's recipe: natural references from rank
bins below the queries, synthetic ones with the study's milder transforms
(--transforms=study; --transforms=lucid for Lucid's standard set).

Writes into --workdir: trials/unit_<u>_q<i>.png (query, the two occlusions,
the references), references/unit_<u>_synthetic.png and
references/unit_<u>_q<i>_<condition>.png, unit_<u>.json,
metrics.json (accuracy and calibrated score per condition with 95% CIs over
units, numbers of units and trials, the model's weights, the reference recipe
used, occlusions per second) and accuracy.png.
With layer:unit items in --units, each layer runs into --workdir/<layer> and
--workdir/metrics.json pools all units. Rerun the same command to resume a
killed run.
"""

from fvjax import launch
from fvjax.experiments import causal_benchmark
from fvjax.launch import model_flags

# The observer is the studied model when --observer_model and --observer_weights name it (the same --weights).
main = launch.experiment_script(__name__, causal_benchmark, "workdir/causal", "Output folder (resumes if it exists).",
                                model=model_flags, options=lambda: {"studied_weights": model_flags.WEIGHTS.value})
