"""``whaled evaluate``: clip and event measures, annotated recordings through the detect
path, the report, the mistakes to look at, and the simulated demo scored.
"""
