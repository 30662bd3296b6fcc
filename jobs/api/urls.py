from django.urls import path, re_path

from jobs.api import views, webhook_views

urlpatterns = [
    path("jobs", views.JobListCreate.as_view(), name="api-jobs"),
    path("jobs/<uuid:job_id>", views.JobDetail.as_view(), name="api-job"),
    path("jobs/<uuid:job_id>/cancel", views.JobCancel.as_view(), name="api-job-cancel"),
    path("jobs/<uuid:job_id>/retry", views.JobRetry.as_view(), name="api-job-retry"),
    path("jobs/<uuid:job_id>/deliveries", views.JobDeliveries.as_view(), name="api-job-deliveries"),
    path("jobs/<uuid:job_id>/<str:kind>", views.JobFile.as_view(), name="api-job-file"),
    path("webhooks", webhook_views.WebhookListCreate.as_view(), name="api-webhooks"),
    path("webhooks/job-callback-secret", webhook_views.JobCallbackSecret.as_view(), name="api-job-callback-secret"),
    path(
        "webhooks/job-callback-secret/rotate",
        webhook_views.JobCallbackSecretRotate.as_view(),
        name="api-job-callback-secret-rotate",
    ),
    path("webhooks/<uuid:endpoint_id>", webhook_views.WebhookDetail.as_view(), name="api-webhook"),
    path(
        "webhooks/<uuid:endpoint_id>/rotate-secret",
        webhook_views.WebhookRotateSecret.as_view(),
        name="api-webhook-rotate",
    ),
    path(
        "webhooks/<uuid:endpoint_id>/deliveries",
        webhook_views.WebhookDeliveries.as_view(),
        name="api-webhook-deliveries",
    ),
    path(
        "webhooks/<uuid:endpoint_id>/deliveries/<int:delivery_id>/redeliver",
        webhook_views.WebhookRedeliver.as_view(),
        name="api-webhook-redeliver",
    ),
    path("providers", views.ProviderList.as_view(), name="api-providers"),
    path("credits", views.CreditBalance.as_view(), name="api-credits"),
    path("credits/ledger", views.CreditLedger.as_view(), name="api-ledger"),
    path("keys", views.ApiKeyListCreate.as_view(), name="api-keys"),
    path("keys/<str:prefix>", views.ApiKeyRevoke.as_view(), name="api-key"),
    # Anything else under /api/v1/ is a JSON 404, in the API's error shape.
    re_path(r"^[\s\S]*$", views.not_found, name="api-not-found"),
]
