"""Who may ask idp for tokens: tenants, their clients and the issuers they trust.

The rules of a registration and the operator's actions on it (``tenants``, ``clients``,
``issuers``), and the workers' cached copy of the clients (``cache``). Below ``oauth``
and ``users``, which read registrations; the CLI and the users API change them.
"""
