"""OUCH 5.0 order entry over Aeron: ``session`` (the login and sequencing layer both ends speak),
``client`` (the trading side) and ``aeron_c`` (Aeron's C client called from compiled code, so that the
trading loop offers and polls without Python). The exchange side is ``engine.simexchange.orderentry``."""
