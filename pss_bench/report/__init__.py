"""Rendering of results, and nothing else: tables, charts, the compare report document, retrieval strips, context maps.

* :mod:`~pss_bench.report.tables`: rich tables (``pq``, ``context-error``, ``compare``) and their cells;
* :mod:`~pss_bench.report.charts`: the compare report's bar charts, with intervals and legends;
* :mod:`~pss_bench.report.document`: the ``--report`` folder (jinja2 templates in ``templates/``:
  HTML, markdown; results.json, provenance.json);
* :mod:`~pss_bench.report.provenance`: what produced a report, and its verdict against the paper;
* :mod:`~pss_bench.report.retrievals`, :mod:`~pss_bench.report.context_map`: figures of instances;
* :mod:`~pss_bench.report.palette`: the dataset's colours, instance shades, class legends;
* :mod:`~pss_bench.report.common`: image finding, crops, the GT JSON's facts and figure saving they share.

Nothing is imported here: matplotlib loads only with a figure.
"""
