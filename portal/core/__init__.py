"""Domain core: imports nothing from the HTTP layer, tenants, scheduler, workers or netboot."""
