"""Webhook deliveries in, work orders out: each kind of GitHub event and what it asks of Slipway."""
