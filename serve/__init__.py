"""Ray Serve applications and local servers: the REST and WebSocket API, model inference, the
dashboard, the MCP server and the Alpaca-compatible paper-trading endpoint."""
