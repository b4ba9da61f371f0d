"""BMC driver interfaces (power, management, deploy, inspect) and their implementations.

Import ``workers.drivers.base`` for the interfaces and ``workers.drivers.registry`` for the
hardware types; this package module imports neither, so importing one never loads the other.
"""
