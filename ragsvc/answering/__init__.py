"""Answering: the `LLMBackend` contract and its backends, chosen by name."""

from ragsvc.answering.base import NOT_FOUND, Answer, LLMBackend, Passage
from ragsvc.answering.extractive import ExtractiveBackend

__all__ = ["NOT_FOUND", "Answer", "ExtractiveBackend", "LLMBackend", "Passage"]
