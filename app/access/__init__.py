"""Who may do what: API tokens, signed links, and how many log follows each caller holds."""
