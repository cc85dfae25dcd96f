"""``whaled detect``: which recordings a run scans, scanning each, where it runs, what it
writes, saved scores and detections redone from them.
"""
