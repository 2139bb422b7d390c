"""Routes for documents and their ingestion jobs: upload, job status and cancelling, document
listings, chunks and deletion."""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Annotated, Any

import anyio
from litestar import Request, Response, delete, get, post
from litestar.datastructures import State, UploadFile
from litestar.params import MultipartBody, QueryParameter

from indexes import ChunkRow, DocumentNotFound, DocumentRow
from ingest import EmptyDocument, UnsupportedType
from ingest.extract import sniff
from ragsvc.api.auth import (
    visible,
    visible_collections,
)
from ragsvc.api.common import AuditedWrite, Caller, DocumentId, JobId, in_thread, services_of
from ragsvc.api.json_limits import parse_metadata
from ragsvc.api.schemas import (
    ChunkList,
    DocumentList,
    JobList,
)
from ragsvc.api.services import Services
from ragsvc.errors import (
    BadRequest,
    Conflict,
    PayloadTooLarge,
    TooManyRequests,
    UnsupportedMediaType,
)
from ragsvc.jobs.queue import (
    TERMINAL_STATES,
    Job,
    JobNotCancellable,
    JobNotFound,
    JobState,
    NewJob,
)
from ragsvc.security.keys import Principal
from ragsvc.telemetry.logs import REQUEST_ID


@dataclass
class UploadForm:
    """Multipart form of `POST /documents`."""

    files: list[UploadFile] = field(default_factory=list)
    collection: str | None = None
    metadata: str | None = None
    """A JSON object stored with every uploaded document."""


@post(
    "/documents",
    status_code=202,
    summary="Upload documents; one ingestion job per file",
    opt={"scope": "write", "action": "upload"},
)
async def upload_documents(
    state: State,
    principal: Caller,
    request: Request[Any, Any, Any],
    data: MultipartBody[UploadForm],
    wait: Annotated[
        bool, QueryParameter(description="Wait for the jobs to finish (up to upload_wait_timeout)")
    ] = False,
) -> Response[JobList]:
    services = services_of(state)
    names = ", ".join(_safe_name(f.filename) for f in _files(data))[:500]
    async with AuditedWrite(services, principal, request, "upload", f"files {names}") as audit:
        jobs, collection = await _upload(services, principal, data)
        audit.target = f"jobs {','.join(j.id for j in jobs)} in collection {collection}"
    status = 202
    if wait:
        jobs = await _wait_for(services, jobs)
        status = 200 if all(j.state in TERMINAL_STATES for j in jobs) else 202
    return Response(JobList(jobs), status_code=status)


def _files(data: UploadForm) -> list[UploadFile]:
    return data.files if isinstance(data.files, list) else [data.files]


def _size_of(upload: UploadFile) -> int:
    file = upload.file
    file.seek(0, os.SEEK_END)
    size = file.tell()
    file.seek(0)
    return size


async def _upload(
    services: Services, principal: Principal, data: UploadForm
) -> tuple[list[Job], str]:
    """Checks the upload and queues a job per file: the jobs and their collection."""
    settings = services.settings
    files = _files(data)
    if not files:
        raise BadRequest("no files in the upload (send them as multipart field 'files')")
    if len(files) > settings.max_files_per_upload:
        raise PayloadTooLarge(
            f"{len(files)} files in one upload; the limit is {settings.max_files_per_upload}"
        )
    collection = (data.collection or settings.default_collection).strip()
    if not collection or len(collection) > 200:
        raise BadRequest("collection must be 1 to 200 characters")
    visible(principal, collection)
    metadata = parse_metadata(data.metadata)
    new_jobs = []
    for upload in files:
        name = _safe_name(upload.filename)
        size = _size_of(upload)  # before reading it: the parser spooled it to disk
        if size > settings.max_file_bytes:
            raise PayloadTooLarge(f"{name} is {size} bytes; the limit is {settings.max_file_bytes}")
        content = await upload.read()
        try:
            media_type = await anyio.to_thread.run_sync(sniff, content, name)
        except EmptyDocument as error:
            raise BadRequest(f"{name}: {error}") from None
        except UnsupportedType as error:
            raise UnsupportedMediaType(f"{name}: {error}") from None
        except Exception:
            media_type = "application/pdf"  # a damaged PDF: its job fails with the reason
        if media_type not in settings.allowed_types:
            allowed = ", ".join(settings.allowed_types)
            raise UnsupportedMediaType(f"{name}: {media_type} is not accepted (allowed: {allowed})")
        new_jobs.append(NewJob(collection, name, content, metadata))
    size = sum(len(job.payload) for job in new_jobs)
    if principal.key_id is not None:
        await _check_quota(services, principal.key_id, principal.upload_quota, size)
    jobs = await in_thread(services.jobs.create, new_jobs, REQUEST_ID.get())
    if principal.key_id is not None:
        await in_thread(services.keys.add_upload, principal.key_id, size)
    services.notify_worker()
    return jobs, collection


async def _check_quota(services: Services, key_id: str, quota: int | None, size: int) -> None:
    limit = quota if quota is not None else services.settings.key_upload_bytes_per_day
    if limit <= 0:
        return
    used = await in_thread(services.keys.uploaded_today, key_id)
    if used + size > limit:
        midnight = (time.time() // 86400 + 1) * 86400
        raise TooManyRequests(
            f"this upload ({size} bytes) would take the key past its {limit} bytes a day "
            f"({used} used today)",
            midnight - time.time(),
        )


async def _wait_for(services: Services, jobs: list[Job]) -> list[Job]:
    deadline = time.monotonic() + services.settings.upload_wait_timeout
    while True:
        current = await services.job_reads.jobs([j.id for j in jobs])
        if all(j.state in TERMINAL_STATES for j in current):
            await _served(services, current)
            return current
        if time.monotonic() > deadline:
            return current
        await asyncio.sleep(0.05)


@get("/jobs/{job_id:str}", summary="An ingestion job: state, progress, error")
async def get_job(state: State, principal: Caller, job_id: JobId) -> Job:
    services = services_of(state)
    job = await services.job_reads.job(job_id)
    if not principal.sees(job.collection):
        raise JobNotFound(job_id)
    await _served(services, [job])
    return job


async def _served(services: Services, jobs: list[Job]) -> None:
    """Read your writes: once a job is reported ready, searches find its document (the
    follower would pick it up within `refresh_interval`; a client that saw "ready" must not
    be told "not found" meanwhile)."""
    if any(j.state == "ready" for j in jobs):
        await in_thread(services.catalog.refresh)


@get("/jobs", summary="Ingestion jobs, newest first, paginated, optionally in one state")
async def list_jobs(
    state: State,
    principal: Caller,
    job_state: Annotated[
        JobState | None, QueryParameter(name="state", description="Only jobs in this state")
    ] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    offset: Annotated[int, QueryParameter(ge=0, le=2**62)] = 0,
) -> JobList:
    collections = None if principal.collections is None else sorted(principal.collections)
    services = services_of(state)
    rows = await services.job_reads.job_page(job_state, collections, limit + 1, offset)
    await _served(services, rows[:limit])
    next_offset = offset + limit if len(rows) > limit else None
    return JobList(rows[:limit], limit, offset, next_offset)


@delete(
    "/jobs/{job_id:str}",
    status_code=200,
    summary="Cancel a queued job (409 once it has started)",
    opt={"scope": "write", "action": "job.cancel"},
)
async def cancel_job(
    state: State, principal: Caller, request: Request[Any, Any, Any], job_id: JobId
) -> Job:
    services = services_of(state)
    async with AuditedWrite(services, principal, request, "job.cancel", f"job {job_id}") as audit:
        job = await services.job_reads.job(job_id)
        if not principal.sees(job.collection):
            raise JobNotFound(job_id)
        try:
            cancelled = await in_thread(services.jobs.cancel, job_id)
        except JobNotCancellable as error:
            raise Conflict(str(error)) from None
        audit.target = f"job {job_id} ({job.file_name})"
    return cancelled


@get("/documents", summary="Documents, paginated, optionally in one collection")
async def list_documents(
    state: State,
    principal: Caller,
    collection: Annotated[str | None, QueryParameter(min_length=1, max_length=200)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100,
    offset: Annotated[int, QueryParameter(ge=0, le=2**62)] = 0,
) -> DocumentList:
    rows = await services_of(state).reads.documents(
        visible(principal, collection),
        limit=limit + 1,
        offset=offset,
        collections=visible_collections(principal, collection),
    )
    next_offset = offset + limit if len(rows) > limit else None
    return DocumentList(rows[:limit], limit, offset, next_offset)


@get("/documents/{document_id:int}", summary="One document's metadata")
async def get_document(state: State, principal: Caller, document_id: DocumentId) -> DocumentRow:
    return await _visible_document(services_of(state), principal, document_id)


async def _visible_document(
    services: Services, principal: Principal, document_id: int
) -> DocumentRow:
    """The document, when the principal may see its collection; otherwise not found."""
    row = await services.reads.document(document_id)
    if not principal.sees(row.collection):
        raise DocumentNotFound(document_id)
    return row


@get("/documents/{document_id:int}/chunks", summary="A document's chunks with pages and offsets")
async def get_document_chunks(
    state: State,
    principal: Caller,
    document_id: DocumentId,
    limit: Annotated[int | None, QueryParameter(ge=1, le=10_000)] = None,
    offset: Annotated[int, QueryParameter(ge=0, le=2**62)] = 0,
) -> ChunkList:
    services = services_of(state)
    await _visible_document(services, principal, document_id)
    wanted = -1 if limit is None else limit + 1
    chunks: list[ChunkRow] = await services.reads.document_chunks(document_id, wanted, offset)
    if limit is None:
        return ChunkList(document_id, chunks, None, offset, None)
    next_offset = offset + limit if len(chunks) > limit else None
    return ChunkList(document_id, chunks[:limit], limit, offset, next_offset)


@delete(
    "/documents/{document_id:int}",
    summary="Delete a document, its chunks and vectors",
    opt={"scope": "write", "action": "delete"},
)
async def delete_document(
    state: State,
    principal: Caller,
    request: Request[Any, Any, Any],
    document_id: DocumentId,
) -> None:
    services = services_of(state)
    target = f"document {document_id}"
    async with AuditedWrite(services, principal, request, "delete", target) as audit:
        row = await _visible_document(services, principal, document_id)
        await in_thread(services.catalog.delete_document, document_id, row.collection)
        audit.target = f"document {document_id} ({row.source_name}) in {row.collection}"


def _safe_name(filename: str | None) -> str:
    """The client's file name as metadata: its last path part, printable, at most 255 chars."""
    name = PurePath((filename or "").replace("\\", "/")).name
    name = "".join(c for c in name if c.isprintable()).strip()
    return name[:255] or "upload"
