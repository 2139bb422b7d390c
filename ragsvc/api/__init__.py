"""The HTTP API: the application factory, the services it opens, and one routes module per
family of endpoints (documents and jobs, collections, search and query, feedback, status, the
OpenAI-compatible routes), with the request checks and API types they share."""
