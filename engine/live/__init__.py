"""The live trading daemon: ``config``, ``builder`` (the one node builder), ``node`` (the node process),
``node_nb`` (its compiled step), ``layout``, ``daemon``, ``journal``, ``recovery``, ``capture`` and ``parity``
(live/backtest parity replay), ``report``."""
