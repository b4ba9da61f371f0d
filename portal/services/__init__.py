"""Use cases, callable without HTTP: each takes a context, a session and the caller."""
