"""Rendering of results, and nothing else: tables, charts, the compare report document, retrieval strips, context maps.

* :mod:`~pss_bench.report.tables`: rich tables (``pq``, ``context-error``, ``compare``) and their cells;
* :mod:`~pss_bench.report.charts`: the compare report's bar charts;
* :mod:`~pss_bench.report.document`: the ``--report`` folder (markdown, HTML, results.json);
* :mod:`~pss_bench.report.retrievals`, :mod:`~pss_bench.report.context_map`: figures of instances;
* :mod:`~pss_bench.report.common`: image finding, palettes, crops and figure saving they share.

Nothing is imported here: matplotlib loads only with a figure.
"""
