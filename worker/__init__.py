"""ipaas-klaviyo worker: the Celery app and everything the sync pipeline needs."""

__version__ = "0.1.0"
