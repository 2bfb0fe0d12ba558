"""Authentication (passwords, JWT, API keys) and authorisation (roles, permissions, scoping)."""
