"""Driver interfaces (power, management, deploy, network) and their implementations."""

from workers.drivers.base import Driver, DriverError, NodeTask, get_driver, register_driver

__all__ = ["Driver", "DriverError", "NodeTask", "get_driver", "register_driver"]
