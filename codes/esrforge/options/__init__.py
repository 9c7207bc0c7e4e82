"""Typed, schema-checked options read from YAML config files (see loader.load_config and schema.Config)."""
