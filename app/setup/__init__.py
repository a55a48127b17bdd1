"""The first run: which GitHub App Slipway is, and /setup's manifest flow that creates it."""
