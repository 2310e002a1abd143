"""The Celery application. Importing it connects to nothing."""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_init
from kombu import pools

from worker import bootstrap
from worker.logging_setup import mask_celery_logs
from worker.observability import init_sentry
from worker.tasks.lost_tasks import LostTaskSweep
from worker.tasks.scheduled_mover import ScheduledMover

app = Celery("ipaas_klaviyo")
app.config_from_object("celeryconfig")
app.conf.imports = ("worker.tasks.steps", "worker.tasks.subscriptions", "worker.tasks.reconcile",
                    "worker.tasks.transactions", "worker.tasks.links", "worker.tasks.consent",
                    "worker.tasks.burst")
app.steps["worker"].add(LostTaskSweep)
app.steps["worker"].add(ScheduledMover)
mask_celery_logs()


@worker_init.connect
def _fail_fast_on_bad_configuration(**_: object) -> None:
    """Load settings and the mapping file as the worker starts: a bad mapping file stops
    the worker with the file and line, instead of failing every task later."""
    settings = bootstrap.check_configuration()
    # Before the pool forks: the children inherit Sentry (its sender restarts per process).
    init_sentry(settings, "worker")


def use_redis(redis_url: str) -> None:
    """Point the app at another Redis (the demo's embedded one, a test's throwaway one),
    dropping connections and the result backend cached for the previous one."""
    app.conf.update(broker_url=redis_url, result_backend=redis_url)
    pools.reset()  # kombu keeps pools per connection URL; a closed one must not come back
    if app._pool is not None:
        app._pool.force_close_all()
    app._after_fork()  # forgets the connection and producer pools
    app._backend_cache = None
    app._local.__dict__.pop("backend", None)
