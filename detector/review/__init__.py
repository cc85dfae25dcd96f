"""``whaled review``: the local web page where a person confirms, rejects, adds and corrects
detections.
"""
