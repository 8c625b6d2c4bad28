"""The feature-visualization engine: parameterizations, transforms, objectives, render.

``fvjax.optvis.render.render(model, units, layer=..., key=...)``; also
available as ``fvjax.render``. ``methods.render_options("maco", model)``
gives the render arguments of MACO, feature accentuation or Lucid's recipe.
"""

from fvjax.optvis import methods
from fvjax.optvis import objectives
from fvjax.optvis import param
from fvjax.optvis import render
from fvjax.optvis import transforms
