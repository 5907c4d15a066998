"""API keys and roles: keys are created, listed, revoked and given a role, only their SHA-256 is
stored, and a request's key is authenticated to the `Actor` the audit log names (keys.py).
"""

from index.auth.keys import (GRANTS, ROLES, allows, authenticate, create_key, key_id_of, list_keys, revoke_key,
                             set_role, verify_key)

__all__ = ["GRANTS", "ROLES", "allows", "authenticate", "create_key", "key_id_of", "list_keys", "revoke_key",
           "set_role", "verify_key"]
