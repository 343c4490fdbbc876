"""Operator actions on tenants and clients, shared by the CLI and any future admin API."""
