"""Natural images: the photos shipped inside scikit-image and scikit-learn, an
image folder in ImageNet layout (``root/<class>/<image>``), and augmented crops.

All images come out as float32 ``[N, size, size, 3]`` in ``[0, 1]``: centre
crop to a square, then bilinear resize (PIL), the usual ImageNet evaluation
preprocessing minus the model-specific normalization (which each model record
applies itself).
"""

from __future__ import annotations

import io
import os
from typing import Iterator, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")

# Photos (not drawings or synthetic patterns) that ship with scikit-image and
# scikit-learn and load offline. Grayscale ones are repeated over 3 channels.
SAMPLE_PHOTOS = (
    "chelsea", "coffee", "astronaut", "rocket", "motorcycle_left", "motorcycle_right",
    "hubble_deep_field", "immunohistochemistry", "retina", "china", "flower",
    "camera", "clock", "coins", "moon", "brick", "grass", "gravel",
)


def to_square(image: np.ndarray, size: int) -> np.ndarray:
  """Centre-crops a uint8 HxW or HxWxC image to a square and resizes it.

  Args:
    image: uint8 array ``[H,W]``, ``[H,W,3]`` or ``[H,W,4]`` (alpha dropped).
    size: output side.

  Returns:
    float32 ``[size,size,3]`` in ``[0,1]``.
  """
  image = np.asarray(image)
  if image.dtype == bool:
    image = image.astype(np.uint8) * 255
  if image.ndim == 2:
    image = np.repeat(image[..., None], 3, axis=-1)
  image = image[..., :3]
  h, w = image.shape[:2]
  side = min(h, w)
  top, left = (h - side) // 2, (w - side) // 2
  crop = Image.fromarray(image[top:top + side, left:left + side].astype(np.uint8))
  crop = crop.resize((size, size), Image.BILINEAR)
  return np.asarray(crop, np.float32) / 255.0


def _raw_sample(name: str) -> np.ndarray:
  import skimage.data  # pylint: disable=g-import-not-at-top
  if name in ("china", "flower"):
    from sklearn.datasets import load_sample_image  # pylint: disable=g-import-not-at-top
    return load_sample_image(f"{name}.jpg")
  if name.startswith("motorcycle_"):
    left, right, _ = skimage.data.stereo_motorcycle()
    return left if name.endswith("left") else right
  return getattr(skimage.data, name)()


def sample_photos(size: int = 224, names: Sequence[str] = SAMPLE_PHOTOS) -> tuple[np.ndarray, tuple[str, ...]]:
  """The embedded natural photos.

  Args:
    size: output side in pixels.
    names: which photos (default: all of :data:`SAMPLE_PHOTOS`).

  Returns:
    ``(images [N,size,size,3] float32 in [0,1], names)``.
  """
  unknown = [n for n in names if n not in SAMPLE_PHOTOS]
  if unknown:
    raise ValueError(f"Unknown sample photo {unknown[0]!r}; accepted: {', '.join(SAMPLE_PHOTOS)}.")
  return np.stack([to_square(_raw_sample(n), size) for n in names]), tuple(names)


def load_image(path: str | os.PathLike, size: int) -> np.ndarray:
  """Reads one image file as float32 ``[size,size,3]`` in ``[0,1]``.

  Raises:
    FileNotFoundError: no such file.
    ValueError: the file is not an image PIL can read.
  """
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise FileNotFoundError(f"No image file at {path!r}.")
  try:
    with Image.open(path) as im:
      return to_square(_as_uint8_rgb(im), size)
  except Image.DecompressionBombError as e:
    raise ValueError(f"Refusing {path!r}: it decompresses to more than {Image.MAX_IMAGE_PIXELS} pixels (a "
                     "decompression bomb); accepted: ordinary photos.") from e
  except (OSError, SyntaxError) as e:
    raise ValueError(f"Cannot read {path!r} as an image; accepted: {', '.join(IMAGE_SUFFIXES)} files.") from e


def _as_uint8_rgb(im: Image.Image) -> np.ndarray:
  """8-bit RGB at the image's true range: 16-bit modes are scaled by 1/257, not clipped (PIL's
  ``convert("RGB")`` saturates them to white)."""
  if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
    gray = np.asarray(im, np.float64)
    if im.mode == "I" and gray.max(initial=0) > 65535:  # 32-bit integers: scale by the file's own maximum
      gray = gray / gray.max() * 65535
    return np.repeat((np.clip(gray, 0, 65535) / 257.0 + 0.5).astype(np.uint8)[..., None], 3, axis=-1)
  return np.asarray(im.convert("RGB"))


def image_folder(root: str | os.PathLike, per_class: int | None = None,
                 classes: Sequence[str] | None = None) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
  """Lists an image folder in ImageNet layout: ``root/<class>/<image>``.

  Args:
    root: the folder; its sorted subfolders are the classes (hidden ones, such
      as ``.ipynb_checkpoints``, are not). The labels are positions in that
      sorted list, not logits: map folders to a model's logits by name with
      :func:`folder_logits`.
    per_class: keep at most this many images per class (sorted by name).
    classes: restrict to these subfolder names.

  Returns:
    ``(paths, labels [N] int32, class_names)``.

  Raises:
    FileNotFoundError: no folder at ``root``.
    ValueError: no class subfolders, or a class folder (of ``classes``) that
      cannot be listed or holds no image file PIL can read (its first readable
      file is looked for, so the check costs one header per class).
  """
  root = os.fspath(root)
  if not os.path.isdir(root):
    raise FileNotFoundError(f"No image folder at {root!r}; accepted: a directory with one subfolder of images per class.")
  class_names = tuple(sorted(d for d in _listdir(root)
                             if not d.startswith(".") and os.path.isdir(os.path.join(root, d))))
  if not class_names:
    raise ValueError(f"Image folder {root!r} has no class subfolders; accepted: root/<class>/<image>.")
  accepted = f"accepted: class folders that each hold at least one readable image ({', '.join(IMAGE_SUFFIXES)})"
  paths, labels = [], []
  for idx, cname in enumerate(class_names):
    if classes is not None and cname not in classes:
      continue
    folder = os.path.join(root, cname)
    files = sorted(f for f in _listdir(folder) if f.lower().endswith(IMAGE_SUFFIXES))
    if not files:  # an empty class would drop out silently, or leave nothing to concatenate
      raise ValueError(f"Class folder {folder!r} holds no image files; {accepted}.")
    if not any(_readable(os.path.join(folder, f)) for f in files):
      raise ValueError(f"Class folder {folder!r} holds no image PIL can read; {accepted}.")
    for f in files[:per_class]:
      paths.append(os.path.join(folder, f))
      labels.append(idx)
  return paths, np.asarray(labels, np.int32), class_names


def _listdir(folder: str) -> list[str]:
  try:
    return os.listdir(folder)
  except OSError as e:
    raise ValueError(f"Cannot list the image folder {folder!r} ({e.strerror.lower() if e.strerror else e}); "
                     "accepted: folders this user can read.") from None


def _readable(path: str) -> bool:
  """Whether PIL can open ``path`` (its header only: cheap)."""
  try:
    with Image.open(path):
      return True
  except (OSError, SyntaxError, Image.DecompressionBombError):
    return False


def folder_logits(folders: Sequence[str], logit_of: Mapping[str, int], model_name: str,
                  num_logits: int) -> tuple[int, ...]:
  """The logit of each class folder, looked up by the folder's name.

  Args:
    folders: class folder names (ImageNet's are WordNet IDs such as ``n01440764``).
    logit_of: folder name -> logit: the model's ``{wnid: logit}``
      (``ModelRecord.logit_of_wnid()``) or a user's class map
      (:func:`fvjax.models.labels.read_class_map`).
    model_name: for the messages.
    num_logits: the model's number of logits (map entries are checked against it).

  Raises:
    ValueError: a folder the mapping does not know, or a logit out of range.
  """
  out = []
  for folder in folders:
    if folder not in logit_of:
      raise ValueError(
          f"Class folder {folder!r} is not one of {model_name}'s classes; accepted: folders named by ImageNet "
          "WordNet ID (e.g. n01440764), or --class_map=FILE (class_map= in the library) with one "
          "'folder_name logit_index' line per folder for other layouts.")
    logit = int(logit_of[folder])
    if not 0 <= logit < num_logits:
      raise ValueError(f"Class folder {folder!r} maps to logit {logit}, but {model_name} has logits "
                       f"0..{num_logits - 1}.")
    out.append(logit)
  return tuple(out)


def batches(paths: Sequence[str], size: int, batch_size: int) -> Iterator[np.ndarray]:
  """Streams image files as batches ``[b,size,size,3]`` (memory stays bounded)."""
  for start in range(0, len(paths), batch_size):
    yield np.stack([load_image(p, size) for p in paths[start:start + batch_size]])


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
  """``[H,W,3]`` in ``[0,1]`` encoded as JPEG at ``quality`` and decoded again (its blocks and ringing)."""
  buffer = io.BytesIO()
  Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
  buffer.seek(0)
  return np.asarray(Image.open(buffer).convert("RGB"), np.float32) / 255.0


def augmented_crops(key: jax.Array, images: jax.Array, n: int, size: int,
                    min_scale: float = 0.5, jitter: float = 0.1) -> jax.Array:
  """Random resized crops, flips and colour jitter of each image.

  Extra same-class natural images for the embedded demo, where only one photo
  per class ships.

  Args:
    key: PRNG key.
    images: ``[N,H,W,3]`` in ``[0,1]``.
    n: crops per image.
    size: output side.
    min_scale: smallest crop side as a fraction of the image side.
    jitter: largest brightness/contrast change (fraction).

  Returns:
    ``[N*n, size, size, 3]`` in ``[0,1]``, crops of image i at rows ``i*n..``.
  """
  images = jnp.asarray(images)
  num, h, w, _ = images.shape
  keys = jax.random.split(key, num * n).reshape(num, n, -1)

  def one(k, image):
    ks, ky, kx, kf, kb, kc = jax.random.split(k, 6)
    scale = jax.random.uniform(ks, (), minval=min_scale, maxval=1.0)
    side = scale * min(h, w)
    y0 = jax.random.uniform(ky, ()) * (h - side)
    x0 = jax.random.uniform(kx, ()) * (w - side)
    # Sample a size x size grid inside the crop box (bilinear).
    t = (jnp.arange(size) + 0.5) / size * side
    rows, cols = jnp.meshgrid(y0 + t - 0.5, x0 + t - 0.5, indexing="ij")
    flip = jax.random.bernoulli(kf)
    cols = jnp.where(flip, 2 * x0 + side - 1 - cols, cols)
    out = jnp.stack([jax.scipy.ndimage.map_coordinates(image[..., c], [rows, cols], order=1, mode="nearest")
                     for c in range(3)], axis=-1)
    bright = jax.random.uniform(kb, (), minval=-jitter, maxval=jitter)
    contrast = 1 + jax.random.uniform(kc, (), minval=-jitter, maxval=jitter)
    mean = out.mean()
    return jnp.clip((out - mean) * contrast + mean + bright, 0.0, 1.0)

  crops = jax.vmap(lambda ks, im: jax.vmap(lambda k: one(k, im))(ks))(keys, images)
  return crops.reshape(num * n, size, size, 3)
