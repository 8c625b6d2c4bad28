"""The feature-visualization engine: parameterizations, transforms, objectives, render.

``fvjax.optvis.render.render(model, units, layer=..., key=...)``; also
available as ``fvjax.render``.
"""

from fvjax.optvis import objectives
from fvjax.optvis import param
from fvjax.optvis import render
from fvjax.optvis import transforms
