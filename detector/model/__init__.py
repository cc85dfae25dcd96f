"""The model: the network, the TorchScript archive that describes itself, scoring windows
through it, calibration of its scores, and inspection of what it holds.
"""
