from django.contrib.auth import views as auth_views
from django.urls import path

from jobs import public_files, staff_files, views, views_account, views_webhooks

urlpatterns = [
    path("", views.root, name="home"),
    path("videos/", views.history, name="history"),
    path("login/", views_account.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("signup/", views_account.signup, name="signup"),
    path("account/password/", views_account.PasswordChangeView.as_view(), name="password-change"),
    path("credits/", views_account.credits, name="credits"),
    path("keys/", views_account.api_keys, name="keys"),
    path("keys/<int:key_id>/rename", views_account.api_key_rename, name="key-rename"),
    path("keys/<int:key_id>/revoke", views_account.api_key_revoke, name="key-revoke"),
    path("webhooks/", views_webhooks.webhooks, name="webhooks"),
    path("webhooks/<uuid:endpoint_id>/", views_webhooks.webhook_detail, name="webhook-detail"),
    path("webhooks/<uuid:endpoint_id>/rotate", views_webhooks.webhook_rotate, name="webhook-rotate"),
    path("webhooks/<uuid:endpoint_id>/enable", views_webhooks.webhook_enable, name="webhook-enable"),
    path("webhooks/<uuid:endpoint_id>/delete", views_webhooks.webhook_delete, name="webhook-delete"),
    path("webhooks/deliveries/<int:delivery_id>/redeliver", views_webhooks.webhook_redeliver, name="webhook-redeliver"),
    path(
        "webhooks/job-callback-secret/rotate",
        views_webhooks.job_callback_secret_rotate,
        name="job-callback-secret-rotate",
    ),
    path("jobs/<uuid:job_id>/", views.job_detail, name="job-detail"),
    path("jobs/<uuid:job_id>/status.json", views.job_status, name="job-status"),
    path("jobs/<uuid:job_id>/video.mp4", views.job_video, name="job-video"),
    path("jobs/<uuid:job_id>/poster.jpg", views.job_poster, name="job-poster"),
    path("jobs/<uuid:job_id>/image.png", views.job_image, name="job-image"),
    path("jobs/<uuid:job_id>/end-frame.png", views.job_tail_image, name="job-tail-image"),
    path("jobs/<uuid:job_id>/cancel", views.job_cancel, name="job-cancel"),
    path("jobs/<uuid:job_id>/rerun", views.job_rerun, name="job-rerun"),
    # Files for the admin: signed links that open only for staff (jobs.staff_files).
    path("staff/files/<str:kind>/<uuid:pk>", staff_files.staff_file, name="staff-file"),
    # A job's input image for providers that fetch it by URL (jobs.public_files).
    path("files/images/<uuid:upload_id>.png", public_files.public_image, name="public-image"),
]
