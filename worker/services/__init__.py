"""The use cases over ports: the sync steps, reconcile, the backfills, replay."""
