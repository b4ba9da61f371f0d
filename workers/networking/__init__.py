"""Tenant networks on the switches: which VLANs each node port should carry (desired state in
the database), applying it through the switch drivers in batches, and reconciling drift."""
