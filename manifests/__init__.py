"""What a revision deploys, as data: repository config, build recipes, container specs."""
