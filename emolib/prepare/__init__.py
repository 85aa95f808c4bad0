"""Producing datasets in the canonical layout (:mod:`emolib.layout`); no chapter imports it.

``staging`` builds every dataset beside its target and moves it into place when finished;
``tables`` reads the user's tables; ``fetch`` downloads and unpacks archives; ``rows``
holds the row rules both converters share; ``instagram``, ``twitter`` and ``emosynth``
write one source each; ``cli`` is ``python -m emolib data ...``.
"""
