from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from app.deps import AdminRead, AdminWriter, CatalogDep, ReadAccess
from app.params import ConceptName, Limit, Offset, SourceId, TakedownId
from app.schemas import ConceptOut, DeleteResponse, Page, SourceOut, TakedownReceipt, error_responses
from index.catalog import (get_receipt, get_source, list_concept_sources, list_concepts, take_down_concept,
                           take_down_source)
from index.db import Source

router = APIRouter(tags=["catalog"])
# Stored formats served under their own image type; anything else is a download, never rendered.
IMAGE_TYPES = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png"), "WEBP": ("image/webp", "webp"),
               "GIF": ("image/gif", "gif"), "BMP": ("image/bmp", "bmp"), "TIFF": ("image/tiff", "tif")}
IMAGE_RESPONSE = {200: {"content": {media: {} for media, _ in IMAGE_TYPES.values()},
                        "description": "The stored bytes, with `X-Content-Type-Options: nosniff`."}}
THUMBNAIL_RESPONSE = {200: {"content": {"image/jpeg": {}}, "description": "A JPEG, with `nosniff`."}}


def source_out(source: Source, concept: str) -> SourceOut:
    return SourceOut(
        id=source.id, concept=concept, filename=source.filename, sha256=source.sha256, format=source.format,
        width=source.width, height=source.height, meta=source.meta or {}, created_at=source.created_at,
        image_url=f"/sources/{source.id}/image", thumbnail_url=f"/sources/{source.id}/thumbnail",
    )


@router.get("/sources/{source_id}", response_model=SourceOut, dependencies=[ReadAccess],
            responses=error_responses(401, 404), summary="A source's metadata")
def read_source(source_id: SourceId, catalog: CatalogDep) -> SourceOut:
    return source_out(*get_source(catalog.sessions, source_id))


@router.get("/sources/{source_id}/image", response_class=FileResponse, dependencies=[ReadAccess],
            responses={**IMAGE_RESPONSE, **error_responses(401, 404)}, summary="The stored original image")
def source_image(source_id: SourceId, catalog: CatalogDep) -> FileResponse:
    source, _ = get_source(catalog.sessions, source_id)
    media_type, suffix = IMAGE_TYPES.get(source.format.upper(), ("application/octet-stream", "bin"))
    disposition = "attachment" if suffix == "bin" else "inline"
    return image_file(catalog.blobs.path(source.sha256), media_type,
                      f'{disposition}; filename="source-{source_id}.{suffix}"')


@router.get("/sources/{source_id}/thumbnail", response_class=FileResponse, dependencies=[ReadAccess],
            responses={**THUMBNAIL_RESPONSE, **error_responses(401, 404)}, summary="A 256 px JPEG thumbnail (cached)")
def source_thumbnail(source_id: SourceId, catalog: CatalogDep) -> FileResponse:
    source, _ = get_source(catalog.sessions, source_id)
    return image_file(catalog.blobs.thumbnail(source.sha256), "image/jpeg",
                      f'inline; filename="source-{source_id}-thumbnail.jpg"')


def image_file(path, media_type: str, disposition: str) -> FileResponse:
    """Stored bytes with headers that stop a browser from reading them as anything but `media_type`."""
    headers = {"Cache-Control": "private, max-age=86400", "X-Content-Type-Options": "nosniff",
               "Content-Disposition": disposition}
    return FileResponse(path, media_type=media_type, headers=headers)


@router.get("/concepts", response_model=Page[ConceptOut], dependencies=[ReadAccess],
            responses=error_responses(401), summary="Concepts with their source counts, by name")
def concepts(catalog: CatalogDep, offset: Offset = 0, limit: Limit = 50) -> Page[ConceptOut]:
    items, total = list_concepts(catalog.sessions, offset, limit)
    return Page[ConceptOut](items=[ConceptOut(**vars(c)) for c in items], total=total, offset=offset, limit=limit)


@router.get("/concepts/{name:path}/sources", response_model=Page[SourceOut], dependencies=[ReadAccess],
            responses=error_responses(401, 404), summary="A concept's sources, oldest first")
def concept_sources(name: ConceptName, catalog: CatalogDep, offset: Offset = 0, limit: Limit = 50) -> Page[SourceOut]:
    rows, total = list_concept_sources(catalog.sessions, name, offset, limit)
    return Page[SourceOut](items=[source_out(row, name) for row in rows], total=total, offset=offset, limit=limit)


@router.delete("/sources/{source_id}", response_model=DeleteResponse,
               responses=error_responses(401, 403, 404), summary="Take down one source (admin)")
def delete_source(source_id: SourceId, catalog: CatalogDep, actor: AdminWriter) -> DeleteResponse:
    """Removes the row, its stored features, its vectors and (unless another source has the same
    bytes) its image and thumbnail. The takedown is recorded with the row removal, so a crash
    cannot make it forgotten; the receipt says when every artefact was gone."""
    return delete_response(take_down_source(catalog, source_id, actor))


@router.delete("/concepts/{name:path}", response_model=DeleteResponse,
               responses=error_responses(401, 403, 404), summary="Take down a concept and all its sources (admin)")
def delete_concept(name: ConceptName, catalog: CatalogDep, actor: AdminWriter) -> DeleteResponse:
    return delete_response(take_down_concept(catalog, name, actor))


def delete_response(receipt) -> DeleteResponse:
    return DeleteResponse(deleted_sources=receipt.sources, takedown_id=receipt.id,
                          receipt_url=f"/takedowns/{receipt.id}")


@router.get("/takedowns/{takedown_id}", response_model=TakedownReceipt, dependencies=[AdminRead],
            responses=error_responses(401, 403, 404), summary="A takedown's receipt (admin)")
def takedown_receipt(takedown_id: TakedownId, catalog: CatalogDep) -> TakedownReceipt:
    return TakedownReceipt(**vars(get_receipt(catalog, takedown_id)))
