"""The Celery task names, in one place: modules that must not import one another (a task's
module that sends another's task, the sweep that re-sends them) send by these names."""

SYNC_CUSTOMER = "ipaas_klaviyo.sync_customer"
APPLY_ADDRESS = "ipaas_klaviyo.apply_address"
APPLY_SUBSCRIPTIONS = "ipaas_klaviyo.apply_subscriptions"
FLUSH_SUBSCRIPTIONS = "ipaas_klaviyo.flush_subscriptions"
FLUSH_BURST = "ipaas_klaviyo.flush_burst"
BURST_STEP = "ipaas_klaviyo.burst_step"
