"""An S3 POST form upload's body, read as it arrives: the fields before the file, then the file's bytes.

S3 reads the form's fields up to the one named ``file`` and ignores any
after it. A ``FormReader`` is the decoder ``streaming.pump`` feeds: it keeps
the fields (at most S3's 20 KB of them), calls ``on_fields`` once they are
all known (the upload is authenticated there, before any of the file is
staged) and yields the file's bytes.
"""

from __future__ import annotations

from typing import Callable, Iterator

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from jobforge.core.errors import ServiceError

MAX_FIELD_BYTES = 20 * 1024  # S3's limit on the fields before the file
MAX_FILE_BYTES = 5 * 1024 ** 3  # S3's largest single upload


def is_form(content_type: str) -> bool:
    return parse_options_header(content_type)[0] == b"multipart/form-data"


class FormReader:
    def __init__(self, content_type: str, on_fields: Callable[[dict[str, str], str | None], None]):
        boundary = parse_options_header(content_type)[1].get(b"boundary")
        if not boundary:
            raise ServiceError("MalformedPOSTRequest", "The body of your POST request is not well-formed "
                               "multipart/form-data.", 400)
        self.fields: dict[str, str] = {}  # lower-case names; S3 reads form field names in any case
        self.file_name: str | None = None
        self.file_done = False
        self._on_fields = on_fields
        self._part = None  # "field", "file" or "ignored" (after the file)
        self._name = ""
        self._value = bytearray()
        self._header_field, self._header_value = bytearray(), bytearray()
        self._disposition = ""
        self._field_bytes = 0
        self._file_bytes = 0
        self._chunks: list[bytes] = []
        self._parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._header_field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header_value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._part_data,
            "on_part_end": self._part_end})

    def feed(self, data: bytes) -> Iterator[bytes]:
        """The file's bytes that ``data`` carries."""
        try:
            self._parser.write(data)
        except FormParserError:
            raise ServiceError("MalformedPOSTRequest", "The body of your POST request is not well-formed "
                               "multipart/form-data.", 400) from None
        chunks, self._chunks = self._chunks, []
        return iter(chunks)

    def close(self) -> None:
        if not self.file_done:
            raise ServiceError("InvalidArgument", "POST requires exactly one file upload per request.", 400,
                               ArgumentName="file", ArgumentValue="0")

    # -- the parser's callbacks ---------------------------------------------------------

    def _part_begin(self) -> None:
        self._disposition = ""
        self._value.clear()

    def _header_end(self) -> None:
        if bytes(self._header_field).lower() == b"content-disposition":
            self._disposition = self._header_value.decode("utf-8", "replace")
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        params = {key.decode("latin-1"): value.decode("utf-8", "replace")
                  for key, value in parse_options_header(self._disposition)[1].items()}
        self._name = params.get("name", "").lower()
        if self.file_done or self._part == "file":
            self._part = "ignored"
        elif self._name == "file":
            self._part = "file"
            self.file_name = params.get("filename", "")
            self._on_fields(self.fields, self.file_name)
        else:
            self._part = "field"

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part == "file":
            self._file_bytes += end - start
            if self._file_bytes > MAX_FILE_BYTES:
                raise ServiceError("EntityTooLarge", "Your proposed upload exceeds the maximum allowed size", 400,
                                   MaxSizeAllowed=MAX_FILE_BYTES)
            self._chunks.append(bytes(data[start:end]))
        elif self._part == "field":
            self._field_bytes += end - start
            if self._field_bytes > MAX_FIELD_BYTES:
                raise ServiceError("MaxPostPreDataLengthExceeded", "Your POST request fields preceding the upload "
                                   "file were too large.", 400)
            self._value.extend(data[start:end])

    def _part_end(self) -> None:
        if self._part == "field":
            self.fields.setdefault(self._name, self._value.decode("utf-8", "surrogateescape"))
        elif self._part == "file":
            self.file_done = True
            self._part = "ignored"
