"""Answered questions: the interaction log with its feedback, and the fine-tuning data
exported from rated answers."""
