"""Values stored exactly as django-redis stores them, so existing data stays readable.

Integers are stored as plain Redis integers (so ``INCRBY`` works on them and
other tools can read them); everything else goes through the serializer and
then the compressor, both django-redis classes chosen by dotted path. Booleans
and enums are serialized although they are ints, as django-redis does.

What leaves the codec is always ``bytes`` of a size Redis takes: redis-py's
packers are never handed an integer they cannot write (hiredis crashes the
process on one), a bytes-like they do not know, or a value Redis would answer
with a protocol error and a closed connection (which would look like an outage).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any

from django.utils.module_loading import import_string
from django_redis.compressors.identity import IdentityCompressor
from django_redis.exceptions import CompressorError

from django_redis_resilience.connection import int_bytes
from django_redis_resilience.exceptions import InvalidValue

DEFAULT_SERIALIZER = "django_redis.serializers.pickle.PickleSerializer"
DEFAULT_COMPRESSOR = "django_redis.compressors.identity.IdentityCompressor"
#: Redis's ``proto-max-bulk-len`` default: the largest string it accepts.
MAX_VALUE_BYTES = 512 * 2**20
#: The bytes an integer's text may start with (``int()`` skips ASCII whitespace and
#: takes a sign): a reply starting otherwise is a serialized value, and trying
#: ``int()`` on it first would cost a raised and caught exception on every read.
_INT_START = frozenset(b"\t\n\x0b\x0c\r +-0123456789")


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
        self._loads = self._serializer.loads
        #: ``None`` for django-redis's identity compressor, which gives back what it is given.
        self._decompress = (
            None if compressor_cls is IdentityCompressor else self._compressor.decompress
        )

    @property
    def serializer(self) -> Any:
        return self._serializer

    @property
    def compresses(self) -> bool:
        """Whether values are compressed (a pattern then cannot match inside them)."""
        return self._decompress is not None

    def encode(self, value: Any) -> bytes:
        if isinstance(value, int) and not isinstance(value, bool | Enum):
            return int_bytes(value)
        return self.serialize(value)

    def serialize(self, value: Any) -> bytes:
        """``value`` through the serializer and compressor, integers too (sorted-set
        members are written so by django-redis)."""
        data = self._compressor.compress(self._serializer.dumps(value))
        if isinstance(data, str):
            data = data.encode()
        elif not isinstance(data, bytes):
            try:
                data = bytes(memoryview(data))
            except TypeError:
                raise InvalidValue(
                    f"The cache's serializer and compressor made a {type(data).__name__}, "
                    "not bytes or str, so the value cannot be written to Redis."
                ) from None
        if len(data) > MAX_VALUE_BYTES:
            raise InvalidValue(
                f"The value is {len(data):,} bytes once serialized; Redis takes at most "
                f"{MAX_VALUE_BYTES:,} bytes (512 MiB) in one key."
            )
        return data

    def decode(self, raw: bytes | int | str) -> Any:
        if type(raw) is bytes and raw and raw[0] not in _INT_START:
            return self._deserialize(raw)
        try:
            return int(raw)
        except (ValueError, TypeError):
            return self._deserialize(raw)

    def _deserialize(self, raw: Any) -> Any:
        if self._decompress is None:
            return self._loads(raw)
        try:
            data = self._decompress(raw)
        except CompressorError:  # small values are stored uncompressed
            data = raw
        return self._loads(data)
