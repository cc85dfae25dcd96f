"""The ``whaled`` command line: one module per command family, argument parsing and the
one-line error contract; the work lives in the other subpackages.
"""
