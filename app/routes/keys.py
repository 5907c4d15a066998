"""API keys over HTTP (admin): list, create (the key is shown once), revoke, change a role;
and GET /whoami for any valid key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from app.deps import AdminRead, AdminWriter, CatalogDep, require_key
from app.params import KeyId
from app.schemas import error_responses
from app.schemas_desk import KeyCreated, KeyIn, KeyOut, RoleIn, WhoAmI
from index.auth import create_key, list_keys, revoke_key, set_role
from index.db import Actor

router = APIRouter(tags=["keys"])


def key_out(row) -> KeyOut:
    return KeyOut(id=row.id, name=row.name, prefix=row.prefix, role=row.role, created_at=row.created_at,
                  revoked_at=row.revoked_at)


@router.get("/whoami", response_model=WhoAmI, responses=error_responses(401),
            summary="The key this request carries: its id, name and role")
def whoami(actor: Annotated[Actor, Depends(require_key)]) -> WhoAmI:
    """Any valid key may ask, including one without a role (`role` is then null)."""
    return WhoAmI(key_id=actor.key_id, name=actor.name, role=actor.role)


@router.get("/keys", response_model=list[KeyOut], dependencies=[AdminRead], responses=error_responses(401),
            summary="Every API key (never the keys themselves; admin)")
def keys(catalog: CatalogDep) -> list[KeyOut]:
    return [key_out(row) for row in list_keys(catalog.sessions)]


@router.post("/keys", status_code=201, response_model=KeyCreated, responses=error_responses(400, 401),
             summary="Create a key with a role; the plain key is in this answer only (admin)")
def new_key(body: KeyIn, catalog: CatalogDep, actor: AdminWriter) -> KeyCreated:
    row, key = create_key(catalog.sessions, body.name, body.role, actor)
    return KeyCreated(**key_out(row).model_dump(), key=key)


@router.delete("/keys/{key_id}", response_model=KeyOut, responses=error_responses(401, 404),
               summary="Revoke a key (admin)")
def revoke(key_id: KeyId, catalog: CatalogDep, actor: AdminWriter) -> KeyOut:
    """At once: its next request gets 401. Revoking a revoked key changes nothing."""
    return key_out(revoke_key(catalog.sessions, key_id, actor))


@router.put("/keys/{key_id}/role", response_model=KeyOut, responses=error_responses(400, 401, 404),
            summary="Change a key's role (admin)")
def change_role(key_id: KeyId, body: RoleIn, catalog: CatalogDep, actor: AdminWriter) -> KeyOut:
    return key_out(set_role(catalog.sessions, key_id, body.role, actor))
