"""Per-call storage: recordings, transcripts, the call index and retention.

Modules (import them directly; this package imports nothing so that the
recorder does not pull in SQLAlchemy or httpx):

- :mod:`~phonebridge.storage.layout`        where files go; call SID and path guards
- :mod:`~phonebridge.storage.recording`     ``CallRecorder`` (stereo WAV), ``repair_wav``
- :mod:`~phonebridge.storage.transcript`    ``TranscriptBuilder``, JSON schema, WebVTT
- :mod:`~phonebridge.storage.models`        typed call-index records (no database code)
- :mod:`~phonebridge.storage.index`         ``CallIndex`` (SQLAlchemy async: SQLite/PostgreSQL)
- :mod:`~phonebridge.storage.retention`     ``apply_retention``
- :mod:`~phonebridge.storage.transcription` ``transcribe_caller`` (OpenAI-compatible API)

Every failure is a :class:`phonebridge.errors.StorageError`; none of them
should end a call: log it with the call SID and carry on.
"""
