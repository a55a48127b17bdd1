"""Turning a revision's source into an image: fetch, unpack, build with BuildKit, keep the log."""
