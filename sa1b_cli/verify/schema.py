"""The SA-1B annotation schema, described in words: what is wrong with a document or an annotation.

The deep check's fast paths only ask "is it well formed?"; these functions run when the answer is
no, to say which field of which annotation is not as SA-1B writes it.
"""

from __future__ import annotations

from typing import Any

ANNOTATION_FIELDS = frozenset({
    "id", "segmentation", "bbox", "area", "predicted_iou", "stability_score", "point_coords", "crop_box",
})
IMAGE_FIELDS = (("image_id", int), ("width", int), ("height", int), ("file_name", str))
_KINDS = {dict: "an object", list: "a list", str: "a string", int: "an integer", float: "a number",
          bool: "a boolean", type(None): "null"}


def document_error(doc: Any) -> str | None:
    """What is wrong with an annotation document's top level and ``image`` header; None: sound."""
    if type(doc) is not dict:
        return f"the top level is {_kind(doc)}, expected an object"
    image = doc.get("image")
    if type(image) is not dict:
        return "'image' is missing" if image is None else f"'image' is {_kind(image)}, expected an object"
    error = _image_error(image)
    if error:
        return error
    annotations = doc.get("annotations")
    if type(annotations) is not list:
        if annotations is None:
            return "'annotations' is missing"
        return f"'annotations' is {_kind(annotations)}, expected a list"
    return None


def _image_error(image: dict[str, Any]) -> str | None:
    for name, kind in IMAGE_FIELDS:
        value = image.get(name)
        if type(value) is not kind:
            if name not in image:
                return f"image.{name} is missing"
            return f"image.{name} is {_kind(value)}, expected {_KINDS[kind]}"
    if image["width"] < 1 or image["height"] < 1:
        return f"image size {image['width']}x{image['height']} is empty"
    return None


def describe_schema_error(annotations: list[Any]) -> str:
    """The first annotation that is not as SA-1B writes it, and how many more are not."""
    bad = [(i, error) for i, a in enumerate(annotations) if (error := annotation_error(a))]
    if not bad:
        return "annotation fields have mixed types"
    index, error = bad[0]
    ann = annotations[index]
    label = f"annotations[{index}]" + (f" (id {ann['id']})" if isinstance(ann, dict) and "id" in ann else "")
    more = f" (and {len(bad) - 1} more annotations)" if len(bad) > 1 else ""
    return f"{label}: {error}{more}"


def annotation_error(ann: Any) -> str | None:
    """What is wrong with one annotation's fields (the first thing, in field order); None: sound."""
    if type(ann) is not dict:
        return f"is {_kind(ann)}, expected an object"
    missing = sorted(ANNOTATION_FIELDS - ann.keys())
    if missing:
        return f"field{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing"
    if type(ann["id"]) is not int:
        return "id is not an integer"
    error = _segmentation_error(ann["segmentation"])
    if error:
        return error
    checks = (
        (_numbers(ann["bbox"], 4), "bbox is not [x, y, w, h]"),
        (_is_number(ann["area"]), "area is not a number"),
        (_is_number(ann["predicted_iou"]), "predicted_iou is not a number"),
        (_is_number(ann["stability_score"]), "stability_score is not a number"),
        (type(ann["point_coords"]) is list, "point_coords is not a list"),
        (_numbers(ann["crop_box"], 4), "crop_box is not [x, y, w, h]"),
    )
    return next((message for passed, message in checks if not passed), None)


def _segmentation_error(seg: Any) -> str | None:
    if type(seg) is not dict or not {"size", "counts"} <= seg.keys():
        return "segmentation needs 'size' and 'counts'"
    if type(seg["counts"]) is not str:
        return "segmentation.counts is not a string"
    if not seg["counts"].isascii():
        return "segmentation.counts is not ASCII"
    if not (_numbers(seg["size"], 2, int) and all(0 <= v < 2**62 for v in seg["size"])):
        return "segmentation.size is not [height, width]"
    return None


def _kind(value: Any) -> str:
    return _KINDS.get(type(value), type(value).__name__)


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _numbers(value: Any, length: int, kind: type | None = None) -> bool:
    return (type(value) is list and len(value) == length
            and all(type(v) is kind if kind else _is_number(v) for v in value))
