"""Typed views of EAS command bodies: parse request trees, build response trees."""
