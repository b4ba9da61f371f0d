"""Hardware-driver tests run against real BMC emulators (fixtures in tests/emulators)."""

from tests.emulators.fixtures import *  # noqa: F403
