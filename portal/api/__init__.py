"""The HTTP layer: one package per resource (views + schemas), plus shared plumbing."""
