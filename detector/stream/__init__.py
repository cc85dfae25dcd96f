"""The one streaming pipeline that listen, detect and evaluate share: blocks of audio,
resampled, cut into windows, scored and tracked into events.
"""
