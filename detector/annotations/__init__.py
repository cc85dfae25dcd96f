"""Labelled audio: where it lies on disk, the expert and reviewed labels read from it, and
what a model was trained on.
"""
