"""Uploads, jobs and their timeline."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone


class UploadQuerySet(models.QuerySet):
    def unused(self) -> UploadQuerySet:
        """Uploads no job uses: not as its image, its end frame, or a mask."""
        return self.filter(jobs__isnull=True, tail_jobs__isnull=True, mask_uses__isnull=True)


class Upload(models.Model):
    """An image a user gave us: the original bytes and the normalised frame."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="uploads")
    original = models.FileField(upload_to="uploads/original/%Y/%m/%d/")
    original_name = models.CharField(max_length=255, blank=True)
    # The public URL the image was fetched from, when it came from one: a
    # provider that takes images by URL may be given it as the original did.
    source_url = models.URLField(max_length=2048, blank=True)
    # Detected from content, never from the name: "JPEG" or "PNG".
    format = models.CharField(max_length=8)
    size_bytes = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    source_width = models.PositiveIntegerField()
    source_height = models.PositiveIntegerField()
    normalized = models.FileField(upload_to="uploads/normalized/%Y/%m/%d/")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    objects = UploadQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.original_name or self.id} ({self.width}x{self.height})"


class JobQuerySet(models.QuerySet):
    def for_user(self, user) -> JobQuerySet:
        return self.filter(owner=user)

    def active(self) -> JobQuerySet:
        return self.exclude(status__in=Job.FINAL_STATES)


class Job(models.Model):
    """One image-to-video generation, a resumable state machine.

    Transitions happen only in ``jobs.pipeline`` with compare-and-set updates;
    each writes a ``JobEvent``.
    """

    QUEUED = "queued"
    PREPARING = "preparing"
    DESCRIBING = "describing"
    SUBMITTED = "submitted"
    RUNNING = "running"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    STATUS_CHOICES = [
        (QUEUED, "Queued"),
        (PREPARING, "Preparing"),
        (DESCRIBING, "Writing a prompt"),
        (SUBMITTED, "Submitted"),
        (RUNNING, "Running"),
        (FINALIZING, "Finalizing"),
        (COMPLETED, "Completed"),
        (FAILED, "Failed"),
        (CANCELLED, "Cancelled"),
        (EXPIRED, "Expired"),
    ]
    FINAL_STATES = frozenset({COMPLETED, FAILED, CANCELLED, EXPIRED})
    # States in which a remote service holds the job and we only poll (the
    # prompt writer while describing, the video provider after that).
    PROVIDER_STATES = frozenset({DESCRIBING, SUBMITTED, RUNNING})

    # Where the prompt came from.
    PROMPT_USER = "user"
    PROMPT_CLIP = "clip"
    PROMPT_DEFAULT = "default"
    PROMPT_SOURCE_CHOICES = [
        (PROMPT_USER, "Given by the user"),
        (PROMPT_CLIP, "Written by CLIP from the photo"),
        (PROMPT_DEFAULT, "DEFAULT_PROMPT (no Replicate token)"),
    ]

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="jobs")
    upload = models.ForeignKey(Upload, on_delete=models.PROTECT, related_name="jobs")
    # The end frame ("tail image") for a provider that takes one: fitted to the job's framing.
    tail_upload = models.ForeignKey(Upload, null=True, blank=True, on_delete=models.PROTECT, related_name="tail_jobs")
    request_id = models.CharField(max_length=128, blank=True, db_index=True)

    provider = models.CharField(max_length=32, db_index=True)
    model = models.CharField(max_length=128, default="default")
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    seed = models.BigIntegerField(default=0, help_text="As asked; 0 means random.")
    cfg_scale = models.FloatField()
    motion_bucket_id = models.PositiveSmallIntegerField()
    prompt = models.TextField(blank=True)
    # Empty while there is no prompt (a provider that needs none, or CLIP still writing).
    prompt_source = models.CharField(max_length=16, choices=PROMPT_SOURCE_CHOICES, blank=True)
    # The CLIP interrogator's prediction, stored before it is waited on.
    prompt_job_id = models.CharField(max_length=255, blank=True, db_index=True)
    negative_prompt = models.TextField(blank=True)
    extra_params = models.JSONField(default=dict, blank=True)
    cost = models.PositiveIntegerField(default=0, help_text="Credits held at creation, charged on success.")

    status = models.CharField(max_length=16, choices=STATUS_CHOICES, default=QUEUED, db_index=True)
    progress = models.FloatField(default=0.0)
    queue_position = models.IntegerField(null=True, blank=True)
    status_message = models.CharField(max_length=255, blank=True)

    provider_job_id = models.CharField(max_length=255, blank=True, db_index=True)
    # Set just before a remote provider is sent the job: found set with no
    # provider_job_id, a submit's outcome was never stored (its worker died).
    submit_started_at = models.DateTimeField(null=True, blank=True)
    provider_response = models.JSONField(default=dict, blank=True)
    seed_used = models.BigIntegerField(null=True, blank=True)
    finish_reason = models.CharField(max_length=32, blank=True)
    video = models.FileField(upload_to="videos/%Y/%m/%d/", blank=True)
    poster = models.FileField(upload_to="posters/%Y/%m/%d/", blank=True)
    video_frames = models.PositiveIntegerField(null=True, blank=True)
    video_duration = models.FloatField(null=True, blank=True)
    video_bytes = models.PositiveIntegerField(null=True, blank=True)

    error_code = models.CharField(max_length=64, blank=True)
    error_message = models.TextField(blank=True, help_text="Written for the user.")
    error_detail = models.TextField(blank=True, help_text="What the provider said, for staff.")

    # Scheduling: when the sweeper should next look at the job, who holds it
    # now, and how many claims in a row did not finish (poison detection).
    next_poll_at = models.DateTimeField(null=True, blank=True, db_index=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    polls = models.PositiveIntegerField(default=0)
    last_polled_at = models.DateTimeField(null=True, blank=True)
    # When a provider's webhook last said "look now" (jobs.provider_hooks): a
    # poke newer than ``last_polled_at`` lets the next look skip the poll floor.
    poked_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Result files are deleted after this.")

    objects = JobQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"]),
            # The ETA of a new job reads its provider's latest finished jobs (jobs.eta).
            models.Index(fields=["provider", "-finished_at"], name="job_provider_finished"),
        ]

    def __str__(self) -> str:
        return f"Job {self.id} ({self.provider}, {self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL_STATES

    def retention_deadline(self, now=None):
        now = now or timezone.now()
        return now + timedelta(hours=settings.RESULT_RETENTION_HOURS)


class JobMask(models.Model):
    """A motion-brush mask of a job (Kling): the static mask (``position`` 0,
    no trajectory) or dynamic mask ``position`` 1-6 with the path its area
    follows, as ``[[x, y], ...]`` in pixels of the job's frame. The image is an
    ``Upload`` checked and fitted to the job's framing like every image."""

    job = models.ForeignKey("Job", on_delete=models.CASCADE, related_name="masks")
    upload = models.ForeignKey(Upload, on_delete=models.PROTECT, related_name="mask_uses")
    position = models.PositiveSmallIntegerField(help_text="0: the static mask; 1-6: the dynamic masks in order.")
    trajectory = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["position"]
        constraints = [models.UniqueConstraint(fields=["job", "position"], name="one_mask_per_job_position")]

    def __str__(self) -> str:
        return "static mask" if self.position == 0 else f"dynamic mask {self.position}"

    @property
    def is_static(self) -> bool:
        return self.position == 0


class JobEvent(models.Model):
    """One line of a job's timeline: a transition, or a note on the way."""

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    from_status = models.CharField(max_length=16, blank=True)
    to_status = models.CharField(max_length=16)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.from_status or '-'} -> {self.to_status}: {self.message}"


class CreditAccount(models.Model):
    """A user's spendable credits, kept equal to the sum of their ledger.

    Changed only by ``jobs.ledger`` with guarded updates in the same
    transaction as the ledger row; never goes negative (a check constraint
    backs the guard).
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="credits")
    balance = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.CheckConstraint(condition=models.Q(balance__gte=0), name="credit_balance_not_negative")]

    def __str__(self) -> str:
        return f"{self.user} — {self.balance} credits"


class LedgerEntry(models.Model):
    """One append-only movement of credits.

    ``amount`` is signed: a hold takes the cost out of the balance, a capture
    turns that hold into a charge (0: the credits already left), a release or
    refund gives them back. One row per (job, kind), so a step run twice can
    never hold, capture or release twice.
    """

    GRANT = "grant"
    HOLD = "hold"
    CAPTURE = "capture"
    RELEASE = "release"
    REFUND = "refund"
    ADJUSTMENT = "adjustment"
    KIND_CHOICES = [
        (GRANT, "Grant"),
        (HOLD, "Hold"),
        (CAPTURE, "Capture"),
        (RELEASE, "Release"),
        (REFUND, "Refund"),
        (ADJUSTMENT, "Adjustment"),
    ]

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="ledger")
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.PROTECT, related_name="ledger")
    kind = models.CharField(max_length=16, choices=KIND_CHOICES)
    amount = models.BigIntegerField()
    balance_after = models.BigIntegerField()
    reason = models.CharField(max_length=255, blank=True)
    staff = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "ledger entries"
        constraints = [
            models.UniqueConstraint(
                fields=["job", "kind"], condition=models.Q(job__isnull=False), name="one_ledger_entry_per_job_and_kind"
            )
        ]
        indexes = [models.Index(fields=["user", "-at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount:+d} for {self.user}"


class ApiKeyQuerySet(models.QuerySet):
    def active(self) -> ApiKeyQuerySet:
        return self.filter(revoked_at__isnull=True)


class ApiKey(models.Model):
    """A user's key for the API, stored only as a hash.

    The full key (``i2v_<prefix>_<secret>``) is shown once at creation; the
    prefix stays visible so a user can tell keys apart and revoke the right
    one.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name or 'key'} (i2v_{self.prefix}…)"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None


class IdempotencyRecord(models.Model):
    """The first answer to a create sent with an ``Idempotency-Key``.

    Unique per (user, key): the insert is the lock, so concurrent repeats see
    the row and get 409 while the first is in progress, the stored answer
    after it. A request in progress holds the row until ``leased_until``, as
    ``holder``; a request that died leaves its lease to run out, and a retry
    then takes the row over. ``job`` is set in the transaction that creates
    the job, so a retry after a crash finds the job instead of making another.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    holder = models.UUIDField(null=True, blank=True)
    leased_until = models.DateTimeField(null=True, blank=True)
    job = models.ForeignKey("Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="one_idempotency_record_per_user_key")]

    def __str__(self) -> str:
        return f"{self.key} ({self.response_status or 'in progress'})"


class CallbackTarget(models.Model):
    """Where a job's end is to be told, fixed when the job is created.

    Created in the job's own transaction by the surface the job came in
    through (today the I2V-compatible endpoint). Unique per (owner, format,
    request id): the insert is the lock that makes a repeated or concurrent
    ``x-request-id`` find the first job instead of starting another.
    ``response_body`` is the answer the first request got, replayed as is.
    """

    FORMAT_I2V = "i2v"
    # Standard Webhooks (signed); a job's own ``callback_url`` from the native API.
    FORMAT_STANDARD = "standard"
    FORMAT_CHOICES = [(FORMAT_I2V, "I2V API (G.A.M.E callback)"), (FORMAT_STANDARD, "Standard Webhooks")]

    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="callback_target")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    format = models.CharField(max_length=16, choices=FORMAT_CHOICES)
    request_id = models.CharField(max_length=128)
    # Empty: no callback URL was configured; the job says so when it ends.
    url = models.CharField(max_length=2048, blank=True)
    # Links in the callback start here (PUBLIC_BASE_URL, or the request's own host).
    public_base_url = models.CharField(max_length=512)
    response_body = models.JSONField(default=dict)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "format", "request_id"], name="one_callback_target_per_request")
        ]

    def __str__(self) -> str:
        return f"{self.format} callback for {self.request_id}"


class CallbackDelivery(models.Model):
    """One message to send: the outbox row, written with the job's final transition.

    Its URL and body are fixed when it is written, so every attempt (a retry,
    a redelivered task after a crash) sends the same bytes. ``next_attempt_at``
    is when the sweeper should hand it to a worker; ``lease_until`` marks an
    attempt in progress (compare-and-set, like a job's lease).
    """

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    STATUS_CHOICES = [(PENDING, "Pending"), (DELIVERED, "Delivered"), (FAILED, "Failed (gave up)")]

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="deliveries")
    # Set for a delivery to a registered endpoint; null for a job's own callback URL.
    endpoint = models.ForeignKey(
        "WebhookEndpoint", null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries"
    )
    # Standard Webhooks: the event's type and ``webhook-id`` (the same on every attempt).
    event_type = models.CharField(max_length=32, blank=True)
    msg_id = models.CharField(max_length=40, blank=True, db_index=True)
    # Who receives it ("endpoint:<id>", or "host:<host:port>" for a bare URL): the
    # unit the dispatcher caps, so one slow receiver cannot take every worker.
    receiver = models.CharField(max_length=300, blank=True, db_index=True)
    format = models.CharField(max_length=16)
    url = models.CharField(max_length=2048)
    body = models.TextField(help_text="Sent byte for byte (UTF-8) on every attempt.")
    status = models.CharField(max_length=16, choices=STATUS_CHOICES, default=PENDING, db_index=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)
    requested_by = models.CharField(max_length=150, blank=True, help_text="Staff who asked to send it again.")

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "callback deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_due")]

    def __str__(self) -> str:
        return f"{self.format} callback for job {self.job_id} ({self.status})"


class CallbackAttempt(models.Model):
    """One try at sending a delivery, as it went."""

    delivery = models.ForeignKey(CallbackDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    at = models.DateTimeField(default=timezone.now)
    succeeded = models.BooleanField(default=False)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.TextField(blank=True, help_text="The first 2 KB of the answer.")
    error = models.TextField(blank=True)
    duration_ms = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.status_code or self.error[:40]}"


class QueueRequest(models.Model):
    """A job made through the queue-style API (``jobs.compat.queue``): the model id
    it was asked for under, which its URLs carry and which must match on every
    later call, and how its result is to be given."""

    OUTPUT_BASE64 = "base64"
    OUTPUT_LINK = "link"
    OUTPUT_CHOICES = [(OUTPUT_BASE64, "base64 MP4 in the JSON"), (OUTPUT_LINK, "a signed link (x-pipelet-output)")]

    job = models.OneToOneField(Job, on_delete=models.CASCADE, primary_key=True, related_name="queue_request")
    model_id = models.CharField(max_length=200)
    output = models.CharField(max_length=8, choices=OUTPUT_CHOICES, default=OUTPUT_BASE64)

    def __str__(self) -> str:
        return f"{self.model_id} request {self.job_id}"


class SigningSecret(models.Model):
    """A ``whsec_`` secret that signs deliveries, with the one it replaced.

    After a rotation both sign until ``previous_secret_until`` (24 hours), so a
    receiver can switch at its own pace (``jobs.webhooks.signing``).
    """

    secret = models.CharField(max_length=100)
    previous_secret = models.CharField(max_length=100, blank=True)
    previous_secret_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        abstract = True


class WebhookEndpoint(SigningSecret):
    """A URL a user registered to be told about their jobs (Standard Webhooks).

    Disabled by us when it answers 410 Gone (``disabled_reason`` says so on the
    dashboard); its owner can enable it again.
    """

    EVENT_CHOICES = [
        ("job.started", "A provider started on the job"),
        ("job.completed", "The video is ready"),
        ("job.failed", "The job failed"),
        ("job.cancelled", "The job was cancelled"),
    ]

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints")
    url = models.CharField(max_length=2048)
    events = models.JSONField(default=list, help_text="Event types sent here.")
    description = models.CharField(max_length=255, blank=True)
    # Links in the deliveries start here (PUBLIC_BASE_URL, or the host the endpoint was made on).
    public_base_url = models.CharField(max_length=512)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.url} ({self.owner})"

    @property
    def is_enabled(self) -> bool:
        return self.disabled_at is None


class JobCallbackSecret(SigningSecret):
    """The secret that signs deliveries to the ``callback_url`` of a user's jobs."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="job_callback_secret")
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"job callback secret of {self.user}"


class ProviderWebhookReceipt(models.Model):
    """A signed provider webhook already acted on, by its ``webhook-id``: the
    unique constraint makes a replay (or the provider's own retry) a no-op.
    The sweeper deletes receipts older than a day; by then a replay is refused
    for its timestamp anyway."""

    provider = models.CharField(max_length=32)
    webhook_id = models.CharField(max_length=255)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["provider", "webhook_id"], name="one_receipt_per_provider_webhook")
        ]

    def __str__(self) -> str:
        return f"{self.provider} webhook {self.webhook_id}"
