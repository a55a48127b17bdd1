"""Deployments and their revisions as people see them: create, env, previews, rollback, teardown."""
