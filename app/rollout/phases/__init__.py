"""A revision's phases, in the order app/rollout/pipeline.py runs them.

admit     queued → building, or waits (and says why) for a build slot or a preview place
fetch     the commit's source unpacked, slipway.toml read, the recipe chosen
build     the image (a rollback reuses its source's) and how it runs
deploy    building → deploying; the replica set started and healthy, not yet routed
go_live   the route switched to it in one update; an older revision never wins
retire    the revisions it replaced drain and stop; old images pruned

Each is a class holding the ports it uses, run on a RevisionContext (phases/context.py): the
revision as loaded once, so a phase is tested alone with a context and fakes.
"""
