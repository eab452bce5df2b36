"""The ``hftmm`` command line (``engine.cli.main``): one module per command group."""
