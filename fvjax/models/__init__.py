"""The model zoo: ``fvjax.models.load(name, **options)`` returns a ModelRecord.

A record is ``apply(params, images in [0,1]) -> (logits, acts)`` plus its
params (a plain nested dict) and metadata; see :mod:`fvjax.models.record`.
"""

from fvjax.models.linen import record_from_linen
from fvjax.models.nnx import record_from_nnx
from fvjax.models.record import ModelRecord, check_images, unknown_name_message
from fvjax.models.registry import describe, load, names
