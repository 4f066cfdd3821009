#!/usr/bin/env bash
# Installs the real MCP servers the tool-gateway tests and benchmark run, at pinned versions,
# into a cache outside git: $OMEGA_MCP_DIR (default $HOME/.cache/omega/mcp).
#   node_modules/  @modelcontextprotocol/server-filesystem and server-memory, exactly as
#                  tool-gateway/servers/npm/package-lock.json pins them (npm ci, no scripts)
#   venv/          the official Python MCP SDK (`mcp` from PyPI) for tool-gateway/servers/*.py,
#                  with its dependencies at the versions tool-gateway/servers/requirements.txt pins
# Idempotent: a stamp file records what was installed; a second run with the same pins does nothing.
set -euo pipefail
log() { printf '\033[1m[mcp]\033[0m %s\n' "$*" >&2; }

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
NPM_PINS="$ROOT/tool-gateway/servers/npm"
REQUIREMENTS="$ROOT/tool-gateway/servers/requirements.txt"
DIR="${OMEGA_MCP_DIR:-$HOME/.cache/omega/mcp}"
digest() { cat "$@" | sha256sum | cut -c1-16; }
PINS="npm=$(digest "$NPM_PINS/package.json" "$NPM_PINS/package-lock.json") python=$(digest "$REQUIREMENTS")"
mkdir -p "$DIR"

if [ -f "$DIR/installed" ] && [ "$(cat "$DIR/installed")" = "$PINS" ]; then
  log "up to date in $DIR ($PINS)"
  exit 0
fi
rm -f "$DIR/installed"

command -v npm >/dev/null 2>&1 || { log "npm is missing (install Node.js 18+ and npm)"; exit 1; }
command -v python3 >/dev/null 2>&1 || { log "python3 is missing"; exit 1; }

log "npm ci: the servers of $NPM_PINS -> $DIR/node_modules"
cp "$NPM_PINS/package.json" "$NPM_PINS/package-lock.json" "$DIR/"
(cd "$DIR" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)

log "python: $(grep '^mcp==' "$REQUIREMENTS") and its dependencies -> $DIR/venv"
[ -x "$DIR/venv/bin/python" ] || python3 -m venv "$DIR/venv"
"$DIR/venv/bin/python" -m pip install -q --disable-pip-version-check -r "$REQUIREMENTS"

for f in server-filesystem/dist/index.js server-memory/dist/index.js; do
  [ -f "$DIR/node_modules/@modelcontextprotocol/$f" ] || { log "missing after install: $f"; exit 1; }
done
"$DIR/venv/bin/python" -c 'import mcp.server.mcpserver' || { log "the mcp SDK does not import"; exit 1; }
printf '%s' "$PINS" >"$DIR/installed"
log "installed in $DIR ($PINS)"
