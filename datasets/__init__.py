"""datasets stage of prodet."""
