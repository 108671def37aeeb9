"""Values stored exactly as django-redis stores them, so existing data stays readable.

Integers are stored as plain Redis integers (so ``INCRBY`` works on them and
other tools can read them); everything else goes through the serializer and
then the compressor, both django-redis classes chosen by dotted path. Booleans
and enums are serialized although they are ints, as django-redis does.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from enum import Enum
from typing import Any

from django.utils.module_loading import import_string
from django_redis.exceptions import CompressorError

DEFAULT_SERIALIZER = "django_redis.serializers.pickle.PickleSerializer"
DEFAULT_COMPRESSOR = "django_redis.compressors.identity.IdentityCompressor"


class Codec:
    """A django-redis serializer and compressor pair."""

    def __init__(
        self,
        *,
        serializer: str | type = DEFAULT_SERIALIZER,
        compressor: str | type = DEFAULT_COMPRESSOR,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        serializer_cls = import_string(serializer) if isinstance(serializer, str) else serializer
        compressor_cls = import_string(compressor) if isinstance(compressor, str) else compressor
        self._serializer = serializer_cls(options=dict(options or {}))
        self._compressor = compressor_cls(options=dict(options or {}))

    def encode(self, value: Any) -> bytes | int:
        if isinstance(value, bool | Enum) or not isinstance(value, int):
            return self._compressor.compress(self._serializer.dumps(value))  # type: ignore[no-any-return]
        return value

    def decode(self, raw: bytes | int | str) -> Any:
        try:
            return int(raw)
        except (ValueError, TypeError):
            data = raw
            with suppress(CompressorError):  # small values are stored uncompressed
                data = self._compressor.decompress(raw)
            return self._serializer.loads(data)
