"""The user directory: password policy, hashing and user lifecycle."""
