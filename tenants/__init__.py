"""Projects (tenants), users, roles, API tokens, quotas and authentication backends."""
