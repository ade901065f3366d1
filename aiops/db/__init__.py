"""PostgreSQL access: migrations and the connection pool."""
