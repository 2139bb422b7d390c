"""Who may do what: API keys with scopes, collections and quotas, and the audit log of
every write."""
