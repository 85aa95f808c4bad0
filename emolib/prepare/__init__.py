"""Producing datasets in the canonical layout (:mod:`emolib.layout`); no chapter imports it.
``staging`` is shared; ``emosynth``, ``instagram``, ``twitter`` each write one source; ``cli``."""
