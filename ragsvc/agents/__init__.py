"""The MCP server: ragsvc's search, answers and documents as tools and resources for agents
(Claude Desktop, Cursor, VS Code, agent frameworks), over streamable HTTP at `/mcp` on the
running server and over stdio (`ragsvc mcp`).

Every tool is a call of the HTTP API with the caller's own key (`tools.ApiClient`), so the
keys, scopes, collections, limits and audit of the routes hold for agents unchanged: there is
one implementation of each behaviour, and the MCP layer only translates."""
