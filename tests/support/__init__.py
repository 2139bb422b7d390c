"""What the tests share: paths and datasets, processes (the server, the CLI), embedders,
and builders of test documents (PDF, Office, hostile files) and a fake LLM server."""
