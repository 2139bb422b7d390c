"""Retrieval for the service: query embedding (micro-batched, cached), hybrid search over the
catalog, reranking, and the passages an answerer reads."""
