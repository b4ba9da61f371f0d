"""Switch drivers: put a node's switch ports on VLANs (beside the BMC drivers in
``workers.drivers``). The interface is in :mod:`workers.switches.base`, the registry in
:mod:`workers.switches.registry`, the safety rails in :mod:`workers.switches.policy`."""
