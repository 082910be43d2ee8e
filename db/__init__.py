"""PostgreSQL: the only state the company has."""
