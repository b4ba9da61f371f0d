"""RQ jobs, the worker entry point, and the hardware/network driver interfaces."""
