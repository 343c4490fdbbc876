"""What a token is and how long it lives: the shared time-claim rules, the lifetime policy,
refresh-token storage (rotation, families, retry grace), and what kills an access token
before its ``exp`` (revocations). Below ``oauth`` and ``users``, which both issue and end
tokens; ``idp.verify`` uses the claim rules alone."""
