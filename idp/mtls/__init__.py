"""Mutual-TLS client identity (RFC 8705): client certificates and how they are matched."""
