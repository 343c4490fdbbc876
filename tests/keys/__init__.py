"""Key store tests; the settings below choose the database key store."""

import secrets

# A key-encryption key for this test run only.
KEK = secrets.token_urlsafe(32)
DB_KEYS = {"IDP_KEY_STORE": "database", "IDP_KEYS_ENCRYPTION_KEY": KEK}
