"""The ``glade`` command line: the only place that reads argv, prints or configures logging.

Nothing in the library imports this package.
"""
