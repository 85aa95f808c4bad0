"""emolib: contrastive text-image emoticon prediction, the package behind the book.

One module per concept: ``layout`` (canonical dataset), ``synth`` (EmoSynth), ``text``
(tweet normalisation), ``images`` (robust decoding), ``data`` (datasets and tensor
cache), ``encoders``, ``losses`` (InfoNCE), ``fusion``, ``model``, ``train``,
``metrics``, ``config`` (profiles) and ``cli``. ``prepare`` builds datasets in the
canonical layout (converters, downloads, EmoSynth's writer); no chapter imports it.
"""

__version__ = "0.1.0"

import warnings as _warnings

# Inside a notebook kernel without ipywidgets, transformers' progress bars warn (with an
# absolute path) that IProgress is missing; emolib's own bars are plain text.
_warnings.filterwarnings("ignore", message="IProgress not found")
