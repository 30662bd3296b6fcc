"""Where providers reach us: webhooks that end the wait for a provider job.

A provider that can call back (``Provider.supports_webhook``, and Replicate's
CLIP interrogator for the prompt stage) is given a webhook URL under
``PUBLIC_BASE_URL`` (``links``). When it calls, the job is looked at at once
(``look``): its poll is dispatched through the task queue, so the usual rules
(the lease, one submit per job, credits, the callback outbox) hold; the body
of a webhook is never applied to the job. Polling stays the safety net.
"""
