r"""Feature visualizations of units of one layer, rendered as one batch.

  python -m fvjax.launch.visualize --model=efficientnet_lite0 --layer=logits \
      --units=281,967 --steps=512 --workdir=/tmp/fv

Writes unit_<u>.png, grid.png and metrics.json (objective value per threshold,
largest value over the embedded natural images) into --workdir.
"""

from fvjax import launch
from fvjax.experiments import visualize
from fvjax.launch import model_flags

main = launch.experiment_script(__name__, visualize, "workdir/visualize",
                                "Output folder (created; results are written atomically).", model=model_flags)
