"""whaled: a streaming detector of North Atlantic right whale upcalls.

Importing this package does nothing beyond defining names: no thread settings, no device
scans, no model loads. The data flows through these modules in this order:

    sources / capture / synthetic -> resample -> windows -> model -> scoring
    -> events -> sinks, with metrics observing every stage and pipeline driving them.
"""

__version__ = "0.1.0"
