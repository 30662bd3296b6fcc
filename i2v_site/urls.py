from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", include("jobs.provider_hooks.urls")),  # /hooks/...: providers say a job changed
    path("", include("jobs.compat.urls")),  # /api/v1/i2v (I2V-API-compatible), before the API's catch-all
    path("api/v1/", include("jobs.api.urls")),
    path("", include("jobs.compat_urls")),  # /api/img2video and /processed_videos/ (Stability-compatible)
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("redoc", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("", include("jobs.urls")),
    # Pages without their own icon link (the admin's) make browsers ask here.
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True)),
]
