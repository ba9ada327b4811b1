"""dbtool's benchmark suite: `python -m benchmarks` prints one Markdown table.

Every figure is measured beside its reference in the same run (interleaved, medians), so
the ratios hold on any machine even when absolute times do not.
"""
