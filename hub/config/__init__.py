"""Configuration read and validated once: the site TOML and the environment's settings."""
