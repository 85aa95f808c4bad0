"""emolib: contrastive text-image emoticon prediction, the package behind the book.

One module per concept, imported one way: layout -> text, images -> preprocess -> data ->
encoders, fusion, losses -> model -> train -> run; emolib/README.md maps each chapter to
its module. ``prepare`` (producing datasets) is never imported by the taught core.
"""

__version__ = "0.1.0"

import warnings as _warnings

# Inside a notebook kernel without ipywidgets, transformers' progress bars warn (with an
# absolute path) that IProgress is missing; emolib's own bars are plain text.
_warnings.filterwarnings("ignore", message="IProgress not found")
