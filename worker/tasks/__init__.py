"""The thin Celery shells, the Celery app, the scheduled-retry mover and the lost-task sweep."""
