"""bench/run.py's parts, one concern per module: ``servers`` (Tansu, the gateway, the bare app),
``scenarios`` (the endpoints and wrk), ``kafka`` (reading the topic back), ``report`` (checks,
table, latest.json) and ``cli`` (the arguments and the order of a run). ``core`` is what they share."""
