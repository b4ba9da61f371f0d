"""Tiny bootable test image: boots, reads its config drive, calls back."""
