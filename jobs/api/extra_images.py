"""The end frame and masks of a create request, read from either body: checked
for what the chosen provider takes before any of them is fetched or decoded
(``jobs.extra_images``), then read from a file part, a URL or a data: URI."""

from __future__ import annotations

from jobs.extra_images import ExtraImage, MaskSpec, check_extra_images
from jobs.sources import fetch_image_url, read_data_uri


def _read(validated: dict, file_field: str, url_field: str) -> ExtraImage | None:
    upload = validated.get(file_field)
    if upload:
        return ExtraImage(source=upload, field=file_field, filename=upload.name)
    given = validated.get(url_field)
    return image_from_reference(given, field=url_field) if given else None


def image_from_base64(value: str, *, field: str) -> ExtraImage:
    """An image sent inline: bare base64 or a ``data:image/…;base64,`` URI."""
    return ExtraImage(source=read_data_uri(value, field=field), field=field, filename=f"{field}-data-uri")


def image_from_reference(value: str, *, field: str) -> ExtraImage:
    """An image sent as a public URL (fetched safely) or as a data: URI."""
    if value.strip().startswith("data:"):
        return image_from_base64(value, field=field)
    return ExtraImage(
        source=fetch_image_url(value, field=field), field=field, filename=value.rsplit("/", 1)[-1], source_url=value
    )


def read_extra_images(validated: dict, provider: str) -> dict:
    """``tail``, ``static_mask`` and ``dynamic_masks`` for ``create_job_from_image``."""
    masks = validated.get("dynamic_masks") or []
    check_extra_images(
        provider,
        tail=bool(validated.get("tail_image") or validated.get("tail_image_url")),
        static_mask=bool(validated.get("static_mask") or validated.get("static_mask_url")),
        dynamic_masks=[mask["trajectory"] for mask in masks],
        tail_field="tail_image" if validated.get("tail_image") else "tail_image_url",
        static_field="static_mask" if validated.get("static_mask") else "static_mask_url",
    )
    dynamic = []
    for index, mask in enumerate(masks):
        field = f"dynamic_masks[{index}].mask_url"
        if mask["mask"]:
            upload = validated[mask["mask"]]
            image = ExtraImage(source=upload, field=mask["mask"], filename=upload.name)
        else:
            image = image_from_reference(mask["mask_url"], field=field)
        dynamic.append(MaskSpec(image=image, trajectory=tuple(mask["trajectory"])))
    return {
        "tail": _read(validated, "tail_image", "tail_image_url"),
        "static_mask": _read(validated, "static_mask", "static_mask_url"),
        "dynamic_masks": dynamic,
    }
