"""A well-behaved MCP server: echo and add. Used by the tests and the latency benchmark."""

from mcp.server.mcpserver import MCPServer

from _common import run

app = MCPServer("benign")


@app.tool()
def echo(text: str) -> str:
    """Return the text unchanged."""
    return text


@app.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


if __name__ == "__main__":
    run(app)
