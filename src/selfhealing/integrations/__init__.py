"""Embedding selfhealing in other frameworks."""
