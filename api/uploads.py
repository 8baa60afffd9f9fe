"""Stream a multipart upload straight into a blob, enforcing the size limit while it arrives."""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from store.blobs import BlobInfo, BlobStore, BlobTooLargeError, BlobWriter
from store.errors import InvalidRequestError, PayloadTooLargeError
from store.files import check_purpose

MAX_FIELD_BYTES = 4096
MAX_HEADER_BYTES = 16 * 1024
MAX_PARTS = 16
MULTIPART_OVERHEAD = 64 * 1024


@dataclass
class Upload:
    """What a multipart request carried: the stored file part and the small text fields."""

    blob: BlobInfo | None = None
    filename: str | None = None
    fields: dict[str, str] = field(default_factory=dict)


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(
        f"File is too large: the limit is {limit} bytes.", param="file", code="file_too_large"
    )


class _Collector:
    """python-multipart callbacks: the `file` part goes to a BlobWriter, other parts to memory."""

    def __init__(self, blobs: BlobStore, key: str, limit: int) -> None:
        self.blobs, self.key, self.limit = blobs, key, limit
        self.upload = Upload()
        self.writer: BlobWriter | None = None
        self._headers: dict[bytes, bytes] = {}
        self._field, self._value = b"", b""
        self._name: str | None = None
        self._buffer = bytearray()
        self._header_bytes = 0
        self._parts = 0

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.part_begin,
            "on_header_field": self.header_field,
            "on_header_value": self.header_value,
            "on_header_end": self.header_end,
            "on_headers_finished": self.headers_finished,
            "on_part_data": self.part_data,
            "on_part_end": self.part_end,
        }

    def part_begin(self) -> None:
        self._headers, self._name, self._buffer = {}, None, bytearray()
        self._header_bytes = 0
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise InvalidRequestError(f"An upload has at most {MAX_PARTS} form fields.")

    def _count_header(self, size: int) -> None:
        self._header_bytes += size
        if self._header_bytes > MAX_HEADER_BYTES:
            raise InvalidRequestError(
                f"A form part's headers are longer than {MAX_HEADER_BYTES} bytes.", param="file"
            )

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._field += data[start:end]

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self._count_header(end - start)
        self._value += data[start:end]

    def header_end(self) -> None:
        self._headers[self._field.lower()] = self._value
        self._field, self._value = b"", b""

    def headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b""))
        self._name = params.get(b"name", b"").decode("utf-8", "replace")
        if self._name == "file":
            if "purpose" in self.upload.fields:
                check_purpose(self.upload.fields["purpose"])
            if self.writer is not None:
                raise InvalidRequestError("Send exactly one 'file' part.", param="file")
            filename = params.get(b"filename")
            self.upload.filename = filename.decode("utf-8", "replace") if filename else None
            self.writer = self.blobs.writer(self.key, max_bytes=self.limit)

    def part_data(self, data: bytes, start: int, end: int) -> None:
        if self._name == "file" and self.writer is not None:
            self.writer.write(data[start:end])
            return
        self._buffer += data[start:end]
        if len(self._buffer) > MAX_FIELD_BYTES:
            name = (self._name or "")[:64]
            raise InvalidRequestError(f"Form field '{name}' is too long.", param=name or None)

    def part_end(self) -> None:
        if self._name == "file" and self.writer is not None:
            if self.upload.blob is None:
                self.upload.blob = self.writer.commit()
        elif self._name:
            self.upload.fields[self._name[:64]] = self._buffer.decode("utf-8", "replace")


async def receive_upload(
    request: Request, blobs: BlobStore, key: str, limit: int
) -> tuple[BlobInfo, Upload]:
    """Parse the request body into `key`; on any failure nothing is left on disk."""
    content_type, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidRequestError(
            "Upload files as multipart/form-data with fields 'file' and 'purpose'.", param="file"
        )
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + MULTIPART_OVERHEAD:
        raise _too_large(limit)
    collector = _Collector(blobs, key, limit)
    parser = MultipartParser(
        boundary,
        collector.callbacks(),  # type: ignore[arg-type]
        max_header_size=MAX_HEADER_BYTES + 1024,  # our own, clearer check comes first
    )
    try:
        async for chunk in request.stream():
            if chunk:
                await run_in_threadpool(parser.write, chunk)
        parser.finalize()
        if collector.upload.blob is None:
            raise InvalidRequestError("Missing the 'file' part of the upload.", param="file")
    except BaseException as exc:
        _discard(collector, blobs, key)
        if isinstance(exc, BlobTooLargeError):
            raise _too_large(limit) from None
        if isinstance(exc, FormParserError | UnicodeError):
            raise InvalidRequestError(
                "The upload is not a well-formed multipart/form-data body.", param="file"
            ) from None
        raise
    return collector.upload.blob, collector.upload


def _discard(collector: _Collector, blobs: BlobStore, key: str) -> None:
    """Every failed exit: drop the temporary file and the committed blob, if any."""
    if collector.writer is not None:
        collector.writer.abort()
    if collector.upload.blob is not None:
        blobs.delete(key)
