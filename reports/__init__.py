"""Aggregation of run stores into tables and HTML."""
