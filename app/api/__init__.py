"""The Litestar application: webhook receiver and the read API."""

from app.api.application import create_app

__all__ = ["create_app"]
