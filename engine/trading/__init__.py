"""What live trading and the backtester share: ``layout`` (the trading tables' columns), ``oms`` (order
states, positions, PnL), ``risk`` (pre-trade checks, kill switch), ``plan`` (quotes into orders), ``view``
(what a strategy sees), ``core`` (the wake sequence and response handling both run on these)."""
