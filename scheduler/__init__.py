"""Matching flavors to nodes (filters, weighers) and claiming the chosen node atomically."""
