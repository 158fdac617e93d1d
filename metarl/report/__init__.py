"""The reporting layer of ``metarl evaluate`` and ``metarl compare``, one job per module.

* :mod:`~metarl.report.common`: method names and labels, shown paths, strict JSON output.
* :mod:`~metarl.report.figures`: matplotlib figures without pyplot state, error bars, axis limits.
* :mod:`~metarl.report.protocol`: the held-out evaluation protocol (``evaluate_run``).
* :mod:`~metarl.report.video`: GIFs (MuJoCo) and trajectory plots (Navigation2D) of a policy.
* :mod:`~metarl.report.runs`: loading run directories and grouping them by method and variant.
* :mod:`~metarl.report.numbers`: per-run and per-group numbers rliable has no metric for.
* :mod:`~metarl.report.aggregate`: rliable statistics (IQM, probability of improvement,
  performance profiles) with fixed bootstrap seeds.
* :mod:`~metarl.report.curves`: learning-curve plots; :mod:`~metarl.report.plots`: adaptation
  curves and performance profiles.
* :mod:`~metarl.report.markdown`: ``report.md``; :mod:`~metarl.report.comparison`:
  ``compare_runs``, which ties them together.

The command lines live in :mod:`metarl.evaluate` and :mod:`metarl.compare`.
"""
