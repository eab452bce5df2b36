"""Historical replay backtests: ``backtest`` (the face), ``backtest_nb`` (the compiled loop), ``layout``,
``models`` (latency, queue, feed latency), ``data`` (one instrument's events), ``result`` (statistics),
``sweep`` (parameter grids on Ray)."""
