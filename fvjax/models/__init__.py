"""The model zoo: ``fvjax.models.load(name, **options)`` returns a ModelRecord."""

from fvjax.models.record import ModelRecord, check_images, unknown_name_message
from fvjax.models.linen import record_from_linen
