"""Flower server strategies that turn validated votes into pattern tickets."""
