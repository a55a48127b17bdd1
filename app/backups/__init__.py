"""Backups of deployment databases: dumps on a schedule, dumps and restores on request."""
