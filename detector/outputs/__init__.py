"""Where detections go: log lines, JSON Lines, Raven tables, Prometheus metrics and the
evidence clips kept for review.
"""
