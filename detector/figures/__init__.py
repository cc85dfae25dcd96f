"""The matplotlib figures: a model's curves and filters, and single detections' spectrograms.
"""
