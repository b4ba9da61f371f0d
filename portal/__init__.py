"""BMS Portal: a multi-tenant bare-metal cloud.

``portal.core`` is the domain core (configuration, database, models, state
machines, events); ``portal.services`` holds the use cases that wire the core
to tenants, scheduler and workers; ``portal.api`` and ``portal.cli`` are the
entry points. See docs/architecture.md for the dependency rule.
"""
