"""Streaming rows vs loading them all (notebooks/04_streaming.ipynb).

- :mod:`perfkit.streaming.settings`: the methods, the query, :class:`StreamSettings`;
- :mod:`perfkit.streaming.child`: one measurement in a fresh process
  (``python -m perfkit.streaming.child``);
- :mod:`perfkit.streaming.measure`: runs the children, builds ``runs`` and ``memory``;
- :mod:`perfkit.streaming.analysis`: ``compare``, ``samples_frame``, ``findings``;
- :mod:`perfkit.streaming.conclusions`: the closing paragraph;
- :mod:`perfkit.streaming.plots`: the figures;
- :mod:`perfkit.streaming.lab`: ``Params``, the run and ``LAB``.

``LAB`` is loaded on first use: the measuring child imports this package, and
must not load pandas or matplotlib with it.
"""

from perfkit._exports import lazy

__all__ = ["LAB"]

__getattr__, __dir__ = lazy(__name__, {"LAB": "perfkit.streaming.lab"}, globals())
