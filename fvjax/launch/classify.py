r"""Prints the top-5 ImageNet labels of the embedded natural photos (or of files).

A first check that a model is loaded and preprocessed correctly:
scikit-image's chelsea must come out as a cat (281-285), coffee as espresso (967).

  python -m fvjax.launch.classify
  python -m fvjax.launch.classify --model=resnet50 --weights=/path/resnet50.pth --images=a.jpg,b.jpg
"""

from absl import flags

from fvjax import launch
from fvjax.launch import model_flags

from fvjax import classify as classify_lib

_IMAGES = flags.DEFINE_list("images", [], "Image files to classify; default: the embedded sample photos.")
_TOP = flags.DEFINE_integer("top", 5, "How many labels to print per image.", lower_bound=1)


def main(argv):
  del argv
  print(classify_lib.report(model_flags.load(), _IMAGES.value or None, top=_TOP.value))


if __name__ == "__main__":
  launch.run(main)
