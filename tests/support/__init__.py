"""What the test tiers and bench/ share: the fake GitHub, the platform started as a user starts
it (`slipway up`), the apps they deploy, the local base images, git repositories, load.

Nothing here is a test; each tier's conftest builds its fixtures from these.
"""
