"""Serving on the discrete-event engine: request streams arriving over time, replicas that
batch them iteration by iteration, and the latency, throughput and energy metrics of the
run (issue 14; definitions in ``requests`` and ``metrics``)."""
