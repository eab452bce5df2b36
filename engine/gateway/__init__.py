"""OUCH 5.0 order entry over Aeron: ``session`` (the login and sequencing layer both ends speak) and
``client`` (the trading side). The exchange side is ``engine.simexchange.orderentry``."""
