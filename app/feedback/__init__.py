"""What GitHub is told: check runs, deployment statuses and the pull-request comment, in order."""
