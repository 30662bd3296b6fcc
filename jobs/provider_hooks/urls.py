"""Routes of the provider webhooks (see ``jobs.provider_hooks.views``)."""

from django.urls import path

from jobs.provider_hooks import views

urlpatterns = [
    path("hooks/<slug:provider>", views.signed_hook, name="provider-hook-signed"),
    path("hooks/<slug:provider>/<str:token>", views.token_hook, name="provider-hook-token"),
]
