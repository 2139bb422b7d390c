"""Keeping and moving the knowledge: the archive format with its checksums (`format`), online
backup (`backup`), restore (`restore`) and portable collections (`collection`)."""
