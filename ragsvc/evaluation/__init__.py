"""Built-in evaluation: retrieval quality on BEIR data, answer quality on SQuAD data."""
