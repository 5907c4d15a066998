from __future__ import annotations

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from PIL import Image

from app.deps import CatalogDep, ReadAccess, WriteAccess
from app.schemas import ConceptOut, DeleteResponse, Page, SourceOut, TakedownReceipt, error_responses
from index.repository import get_source, list_concept_sources, list_concepts
from index.models import Source
from index.takedowns import get_receipt, take_down_concept, take_down_source

router = APIRouter(tags=["catalog"])
Offset = Query(0, ge=0, description="How many items to skip.")
Limit = Query(50, ge=1, le=500, description="How many items to return.")
IMAGE_RESPONSE = {200: {"content": {"image/*": {}}, "description": "The image bytes."}}


def source_out(source: Source, concept: str) -> SourceOut:
    return SourceOut(
        id=source.id, concept=concept, filename=source.filename, sha256=source.sha256, format=source.format,
        width=source.width, height=source.height, meta=source.meta or {}, created_at=source.created_at,
        image_url=f"/sources/{source.id}/image", thumbnail_url=f"/sources/{source.id}/thumbnail",
    )


@router.get("/sources/{source_id}", response_model=SourceOut, dependencies=[ReadAccess],
            responses=error_responses(401, 404), summary="A source's metadata")
def read_source(source_id: int, catalog: CatalogDep) -> SourceOut:
    return source_out(*get_source(catalog.sessions, source_id))


@router.get("/sources/{source_id}/image", response_class=FileResponse, dependencies=[ReadAccess],
            responses={**IMAGE_RESPONSE, **error_responses(401, 404)}, summary="The stored original image")
def source_image(source_id: int, catalog: CatalogDep) -> FileResponse:
    source, _ = get_source(catalog.sessions, source_id)
    media_type = Image.MIME.get(source.format.upper(), "application/octet-stream")
    return FileResponse(catalog.blobs.path(source.sha256), media_type=media_type,
                        headers={"Cache-Control": "private, max-age=86400"})


@router.get("/sources/{source_id}/thumbnail", response_class=FileResponse, dependencies=[ReadAccess],
            responses={**IMAGE_RESPONSE, **error_responses(401, 404)}, summary="A 256 px JPEG thumbnail (cached)")
def source_thumbnail(source_id: int, catalog: CatalogDep) -> FileResponse:
    source, _ = get_source(catalog.sessions, source_id)
    return FileResponse(catalog.blobs.thumbnail(source.sha256), media_type="image/jpeg",
                        headers={"Cache-Control": "private, max-age=86400"})


@router.get("/concepts", response_model=Page[ConceptOut], dependencies=[ReadAccess],
            responses=error_responses(401), summary="Concepts with their source counts, by name")
def concepts(catalog: CatalogDep, offset: int = Offset, limit: int = Limit) -> Page[ConceptOut]:
    items, total = list_concepts(catalog.sessions, offset, limit)
    return Page[ConceptOut](items=[ConceptOut(**vars(c)) for c in items], total=total, offset=offset, limit=limit)


@router.get("/concepts/{name:path}/sources", response_model=Page[SourceOut], dependencies=[ReadAccess],
            responses=error_responses(401, 404), summary="A concept's sources, oldest first")
def concept_sources(name: str, catalog: CatalogDep, offset: int = Offset, limit: int = Limit) -> Page[SourceOut]:
    rows, total = list_concept_sources(catalog.sessions, name, offset, limit)
    return Page[SourceOut](items=[source_out(row, name) for row in rows], total=total, offset=offset, limit=limit)


@router.delete("/sources/{source_id}", response_model=DeleteResponse, dependencies=[WriteAccess],
               responses=error_responses(401, 404), summary="Take down one source")
def delete_source(source_id: int, catalog: CatalogDep) -> DeleteResponse:
    """Removes the row, its stored features, its vectors and (unless another source has the same
    bytes) its image and thumbnail. The takedown is recorded with the row removal, so a crash
    cannot make it forgotten; the receipt says when every artefact was gone."""
    return delete_response(take_down_source(catalog, source_id))


@router.delete("/concepts/{name:path}", response_model=DeleteResponse, dependencies=[WriteAccess],
               responses=error_responses(401, 404), summary="Take down a concept and all its sources")
def delete_concept(name: str, catalog: CatalogDep) -> DeleteResponse:
    return delete_response(take_down_concept(catalog, name))


def delete_response(receipt) -> DeleteResponse:
    return DeleteResponse(deleted_sources=receipt.sources, takedown_id=receipt.id,
                          receipt_url=f"/takedowns/{receipt.id}")


@router.get("/takedowns/{takedown_id}", response_model=TakedownReceipt, dependencies=[WriteAccess],
            responses=error_responses(401, 404), summary="A takedown's receipt")
def takedown_receipt(takedown_id: str, catalog: CatalogDep) -> TakedownReceipt:
    return TakedownReceipt(**vars(get_receipt(catalog, takedown_id)))
