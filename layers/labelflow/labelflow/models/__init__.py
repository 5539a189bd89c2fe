"""Pydantic models for every boundary: events, state payloads, records, manifests and settings."""
