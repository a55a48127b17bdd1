"""What runs and how many: the replica set, health, the route table, reconciler and autoscaler."""
