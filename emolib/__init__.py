"""emolib: contrastive text-image emoticon prediction, the package behind the book.

One module per concept: ``layout`` (canonical dataset), ``synth`` (EmoSynth), ``text``
(tweet normalisation), ``images`` (robust decoding), ``data`` (datasets and tensor
cache), ``encoders``, ``losses`` (InfoNCE), ``fusion``, ``model``, ``train``,
``metrics``, ``config`` (profiles) and ``cli``.
"""

__version__ = "0.1.0"
