"""The processes of `slipway up`: the supervisor and the embedded services it starts."""
