"""TFOD's image resizers (``fixed_shape``, ``keep_aspect_ratio`` padded to its maximum) as the
network input size and the settings that reproduce them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

FIXED_SHAPE = "fixed_shape"
KEEP_ASPECT_RATIO = "keep_aspect_ratio"
LAYOUTS = ("NHWC", "NCHW")


@dataclass(frozen=True)
class Preprocessor:
    """TFOD's ``image_resizer``; ``height`` x ``width`` is the network input size.

    ``keep_aspect_ratio`` is only supported with ``pad_to_max_dimension`` (TensorRT needs a
    fixed input), so its ``height`` and ``width`` both equal ``max_dimension``.
    """

    kind: str
    height: int
    width: int
    min_dimension: int | None = None
    max_dimension: int | None = None
    # Pixel value of the padding. TFOD's SSD normalises before it resizes and pads with 0 in the
    # normalised space: in pixels that is the value the normalisation maps to 0.
    pad_value: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        if self.kind not in (FIXED_SHAPE, KEEP_ASPECT_RATIO):
            raise ValueError(
                f"unknown preprocessor kind {self.kind!r}: use {FIXED_SHAPE!r} "
                f"or {KEEP_ASPECT_RATIO!r}"
            )
        for name in ("height", "width", "min_dimension", "max_dimension"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value <= 0
            ):
                raise ValueError(f"{self.kind} {name} must be a positive integer, got {value!r}")
        if self.kind == FIXED_SHAPE:
            if self.min_dimension is not None or self.max_dimension is not None:
                raise ValueError("fixed_shape takes no min_dimension/max_dimension")
            return
        if self.min_dimension is None or self.max_dimension is None:
            raise ValueError("keep_aspect_ratio needs min_dimension and max_dimension")
        if self.min_dimension > self.max_dimension:
            raise ValueError(
                f"keep_aspect_ratio min_dimension {self.min_dimension} is larger than "
                f"max_dimension {self.max_dimension}"
            )
        if (self.height, self.width) != (self.max_dimension, self.max_dimension):
            raise ValueError(
                "keep_aspect_ratio (padded to max_dimension) needs height == width == "
                f"max_dimension ({self.max_dimension}), got {self.height}x{self.width}"
            )

    @classmethod
    def fixed_shape(cls, height: int, width: int) -> Preprocessor:
        """TFOD ``fixed_shape_resizer`` to ``height`` x ``width``."""
        return cls(FIXED_SHAPE, height, width)

    @classmethod
    def keep_aspect_ratio(cls, min_dimension: int, max_dimension: int) -> Preprocessor:
        """TFOD ``keep_aspect_ratio_resizer`` with ``pad_to_max_dimension: true``."""
        return cls(KEEP_ASPECT_RATIO, max_dimension, max_dimension, min_dimension, max_dimension)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessor:
        """Inverse of :meth:`to_dict`."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        missing = {"kind", "height", "width"} - set(d)
        if unknown or missing:
            raise ValueError(
                f"bad preprocessor dict {d!r}: unknown keys {sorted(unknown)}, "
                f"missing keys {sorted(missing)}"
            )
        if "pad_value" in d:
            d = {**d, "pad_value": tuple(d["pad_value"])}
        return cls(**d)

    def to_dict(self) -> dict:
        """JSON-able dict (e.g. for ONNX metadata)."""
        return asdict(self)

    def with_pad_value(self, pad_value: tuple[float, float, float]) -> Preprocessor:
        """The same resizer, padding with ``pad_value`` (pixels) instead of zeros."""
        return replace(self, pad_value=tuple(float(v) for v in pad_value))

    @classmethod
    def from_string(cls, text: str) -> Preprocessor:
        """Parse ``fixed_shape:HxW`` or ``keep_aspect_ratio:MIN:MAX`` (e.g. ``640:1024``)."""
        usage = "use 'fixed_shape:HEIGHTxWIDTH' or 'keep_aspect_ratio:MIN:MAX'"
        kind, _, args = text.strip().partition(":")
        kind = kind.removesuffix("_resizer")
        try:
            if kind == FIXED_SHAPE:
                height, width = (int(v) for v in args.lower().split("x"))
                return cls.fixed_shape(height, width)
            if kind == KEEP_ASPECT_RATIO:
                min_dimension, max_dimension = (int(v) for v in args.split(":"))
                return cls.keep_aspect_ratio(min_dimension, max_dimension)
        except ValueError as err:
            raise ValueError(f"bad preprocessor {text!r} ({err}): {usage}") from None
        raise ValueError(f"bad preprocessor {text!r}: {usage}")

    def to_string(self) -> str:
        """Inverse of :meth:`from_string`."""
        if self.kind == FIXED_SHAPE:
            return f"{FIXED_SHAPE}:{self.height}x{self.width}"
        return f"{KEEP_ASPECT_RATIO}:{self.min_dimension}:{self.max_dimension}"
