"""The kernel: tables, errors, settings, ports and small tools every other package may use.

It imports nothing from the rest of `app/`, so anything can depend on it without a cycle."""
