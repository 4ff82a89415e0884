"""Decoder families behind one protocol (see decoders.base)."""
