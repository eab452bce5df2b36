"""The simulated exchange: ``config``, ``exchange`` (the process), ``matching`` / ``matching_nb`` (price-time
matching), ``layout`` (requests, reports, matcher tables), ``flow`` / ``flow_nb`` (seeded background flow),
``replayflow`` / ``replayflow_nb`` (a recorded day as the flow), ``mdpub`` (ITCH over MoldUDP64),
``orderentry`` (the OUCH server)."""
