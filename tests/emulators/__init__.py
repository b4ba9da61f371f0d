"""Real BMC emulators for hardware-driver tests.

``ipmi_sim.IpmiSim`` runs OpenIPMI's ``ipmi_sim`` (IPMI 2.0 / RMCP+ over UDP) and
``sushy.SushyEmulator`` runs sushy-tools' ``sushy-emulator`` (Redfish over HTTPS, fake
driver); both listen on 127.0.0.1 only, keep their state under a directory the caller
owns, and are killed (process group) on ``stop()``/``close()``/interpreter exit.
``fixtures`` exposes them as pytest fixtures (``ipmi_bmc``, ``redfish_bmc``);
``pyghmi_child.PyghmiChild`` runs a pyghmi IPMI client in its own interpreter for tests.
"""
