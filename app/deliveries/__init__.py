"""Webhook deliveries in, work orders out: each kind of GitHub event and what it asks of Slipway
(one module per event, handlers.py the table), and the bus that carries the orders out."""
