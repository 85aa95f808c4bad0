"""Build-time glue for the book, loaded by _config.yml (sphinx.local_extensions).

1. A chapter is written for three readers: the book, GitHub and Jupyter/Colab. In the
   notebooks, links to the book's prose pages are written as they resolve in the
   repository (``../book/notation.md``), and the Colab badge uses Colab's own image.
   For the book, whose chapters are copies in ``book/notebooks/``, this extension maps
   ``../book/`` to ``../`` and the remote badge image to the copy in ``_static/``, so the
   built book links correctly and loads nothing from the network.
2. Launch buttons only where they open a committed notebook: the chapters. A notebook
   page of the book itself (the results page) reads the repository's files, and the
   button would open a path that does not exist.
3. The bibliography style ``emolib_authoryear``: entries sorted by author and year,
   names as "Radford, A.", and labels in author-year form ("Radford et al., 2021")
   instead of ``[BBRS18]``, matching the text's author-year citations
   (``bibtex_reference_style: author_year``).
"""

from collections import Counter

from pybtex.plugin import register_plugin
from pybtex.style.formatting.plain import Style as PlainStyle
from pybtex.style.labels import BaseLabelStyle

COLAB_BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
LOCAL_BADGE = "../_static/colab-badge.svg"


class AuthorYearLabels(BaseLabelStyle):
    """Labels as the text cites: "Gorodkin, 2004", "Howard and Ruder, 2018",
    "Radford et al., 2021"."""

    def format_labels(self, sorted_entries):
        labels = [self._label(entry) for entry in sorted_entries]
        counts, seen = Counter(labels), Counter()
        for i, label in enumerate(labels):
            if counts[label] > 1:  # two works of the same authors and year: 2021a, 2021b
                labels[i] = label + "abcdefghijklmnopqrstuvwxyz"[seen[label]]
                seen[label] += 1
        return labels

    @staticmethod
    def _label(entry):
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        names = [" ".join(p.prelast_names + p.last_names).replace("{", "").replace("}", "")
                 for p in people]
        if not names:
            who = entry.fields.get("title", "?")
        elif len(names) == 1:
            who = names[0]
        elif len(names) == 2:
            who = f"{names[0]} and {names[1]}"
        else:
            who = f"{names[0]} et al."
        return f"{who}, {entry.fields.get('year', 'n.d.')}"


class AuthorYearStyle(PlainStyle):
    """pybtex's plain style (sorted by author, year, title), "Last, F." names, and
    author-year labels."""

    default_name_style = "lastfirst"
    default_label_style = "emolib_authoryear"

    def __init__(self, **kwargs):
        kwargs.setdefault("abbreviate_names", True)
        super().__init__(**kwargs)


register_plugin("pybtex.style.labels", "emolib_authoryear", AuthorYearLabels)
register_plugin("pybtex.style.formatting", "emolib_authoryear", AuthorYearStyle)


def rewrite_chapter_source(app, docname, source):
    """Map repository-relative links and the remote badge of a chapter to the book."""
    if not docname.startswith("notebooks/"):
        return
    source[0] = source[0].replace(COLAB_BADGE, LOCAL_BADGE).replace("](../book/", "](../")


def launch_buttons_for_chapters_only(app, pagename, templatename, context, doctree):
    """After sphinx-book-theme adds its launch buttons (priority 501), drop them on every
    page that is not a chapter: only ``notebooks/NN_name`` mirrors a committed notebook
    (``path_to_book`` in _config.yml)."""
    if not pagename.startswith("notebooks/"):
        buttons = context.get("header_buttons", [])
        buttons[:] = [b for b in buttons if b.get("label") != "launch-buttons"]


def setup(app):
    app.connect("source-read", rewrite_chapter_source)
    app.connect("html-page-context", launch_buttons_for_chapters_only, priority=502)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
