"""Machine descriptions: one YAML file per CPU (bundled here, or in the user's machine store) and their loader."""
