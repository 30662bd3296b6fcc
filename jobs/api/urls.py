from django.urls import path, re_path

from jobs.api import views

urlpatterns = [
    path("jobs", views.JobListCreate.as_view(), name="api-jobs"),
    path("jobs/<uuid:job_id>", views.JobDetail.as_view(), name="api-job"),
    path("jobs/<uuid:job_id>/cancel", views.JobCancel.as_view(), name="api-job-cancel"),
    path("jobs/<uuid:job_id>/retry", views.JobRetry.as_view(), name="api-job-retry"),
    path("jobs/<uuid:job_id>/<str:kind>", views.JobFile.as_view(), name="api-job-file"),
    path("providers", views.ProviderList.as_view(), name="api-providers"),
    path("credits", views.CreditBalance.as_view(), name="api-credits"),
    path("credits/ledger", views.CreditLedger.as_view(), name="api-ledger"),
    path("keys", views.ApiKeyListCreate.as_view(), name="api-keys"),
    path("keys/<str:prefix>", views.ApiKeyRevoke.as_view(), name="api-key"),
    # Anything else under /api/v1/ is a JSON 404, in the API's error shape.
    re_path(r"^[\s\S]*$", views.not_found, name="api-not-found"),
]
